# Where manifests are kept in the image (builder copies them to
# NAME.d/dib-manifests next to the outputs).
export DIB_MANIFEST_IMAGE_DIR=${DIB_MANIFEST_IMAGE_DIR:-/etc/dib-manifests}

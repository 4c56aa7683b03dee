# cloud-init would configure the network over simple-init's: if anything
# still installs it, it gets no datasource (post-install.d also disables it).
export DIB_CLOUD_INIT_DATASOURCES="None"

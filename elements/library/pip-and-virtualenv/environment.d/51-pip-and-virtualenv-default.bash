# Distribution packages are the default way to get pip and virtualenv:
# today's distributions mark their python as externally managed (PEP 668),
# and a pip from upstream over the packaged one breaks package updates.
# DIB_INSTALLTYPE_pip_and_virtualenv=source asks for the upstream ones.
export DIB_INSTALLTYPE_pip_and_virtualenv=${DIB_INSTALLTYPE_pip_and_virtualenv:-package}

# The commands elements should call (only where dib-python exists: from
# pre-install.d on, inside the image).
if [ -e /usr/local/bin/dib-python ]; then
    _dib_python_path=$(readlink /usr/local/bin/dib-python)
    export DIB_PYTHON_PIP="$_dib_python_path -m pip"
    if [ "${DIB_PYTHON_VERSION:-3}" = 3 ]; then
        export DIB_PYTHON_VIRTUALENV="$_dib_python_path -m venv"
    else
        export DIB_PYTHON_VIRTUALENV="$_dib_python_path -m virtualenv"
    fi
    unset _dib_python_path
fi

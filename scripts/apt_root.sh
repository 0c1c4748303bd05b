# Sourced by the setup scripts. apt_root NAME WHAT OTHERWISE: sets SUDO (an array: empty
# as root, or sudo -n) for apt-get, or exits 2 saying why apt-get cannot be used here
# (no apt-get: OTHERWISE says what to do; no root: installing WHAT needs it).
apt_root() {
    if ! command -v apt-get >/dev/null; then
        echo "$1: no apt-get here: $3" >&2
        exit 2
    fi
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            SUDO=(sudo -n)
        else
            echo "$1: installing $2 needs root" >&2
            exit 2
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
}

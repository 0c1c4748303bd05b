#!/usr/bin/env bash
# What a Vulkan build and its tests need, from Debian's or Ubuntu's packages: the shader
# compiler (glslc), the Vulkan loader and headers, SPIR-V headers, and Mesa's Vulkan
# drivers, lavapipe among them (a Vulkan device that runs on the CPU: the tests' GPU).
# Also ccache, which keeps rebuilds short. Installs only what is missing; needs root (or
# sudo) for that. Exit status 0 when everything is there afterwards; 2 when it cannot be
# installed here (no apt-get, no root, a Mesa too old and no backports): make test then
# skips the device suite and says why; 1 when an installation failed.
#
# Mesa before 24 is not enough for the tests: Debian 12's lavapipe (Mesa 22.3.6) crashed
# in its queue thread (a jump to an invalid address) in most runs of some cache tests, in
# graphs that Mesa 25.0.7 (bookworm-backports) runs cleanly every time. On Debian 12 the
# drivers come from bookworm-backports.
#
#   bash scripts/setup_vulkan.sh          # install what is missing
#   bash scripts/setup_vulkan.sh --check  # only say what is missing
set -uo pipefail

PACKAGES=(glslc libvulkan-dev spirv-headers mesa-vulkan-drivers ccache)
MESA_MIN=24

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
mesa_major() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'; }
codename() { . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}"; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
old_mesa=0
if installed mesa-vulkan-drivers && [ "$(mesa_major)" -lt "$MESA_MIN" ]; then
    old_mesa=1
fi
if [ ${#missing[@]} -eq 0 ] && [ $old_mesa -eq 0 ]; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    [ ${#missing[@]} -gt 0 ] && echo "setup_vulkan.sh: missing: ${missing[*]}" >&2
    [ $old_mesa -eq 1 ] && echo "setup_vulkan.sh: Mesa $(mesa_major) is older than $MESA_MIN" >&2
    exit 1
fi
source "$(dirname "$0")/apt_root.sh"
apt_root setup_vulkan.sh "${missing[*]:-a newer mesa-vulkan-drivers}" \
    "install glslc, the Vulkan headers and loader and a Vulkan driver yourself (the Vulkan SDK has them), then build with CMAKE_ARGS=-DGGML_VULKAN=ON"
apt_install() {
    # the package lists may be missing on a fresh machine, or stale
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
        { "${SUDO[@]}" apt-get update -q >/dev/null && "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@"; }
}
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup_vulkan.sh: installing ${missing[*]}"
    apt_install "${missing[@]}" || { echo "setup_vulkan.sh: apt-get could not install ${missing[*]}" >&2; exit 1; }
fi
if [ "$(mesa_major)" -lt "$MESA_MIN" ]; then
    if [ "$(codename)" = "bookworm" ]; then
        echo "setup_vulkan.sh: Mesa $(mesa_major) is too old for the tests: mesa-vulkan-drivers from bookworm-backports"
        list=/etc/apt/sources.list.d/bookworm-backports.list
        grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/ ||
            echo "deb http://deb.debian.org/debian bookworm-backports main" | "${SUDO[@]}" tee "$list" >/dev/null
        "${SUDO[@]}" apt-get update -q >/dev/null
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null ||
            { echo "setup_vulkan.sh: could not install mesa-vulkan-drivers from bookworm-backports" >&2; exit 1; }
    else
        echo "setup_vulkan.sh: Mesa $(mesa_major) is older than $MESA_MIN and this is not Debian 12: install a" \
             "newer mesa-vulkan-drivers for the device suite (older lavapipe crashed in it)" >&2
        exit 2
    fi
fi
exit 0

#!/usr/bin/env bash
# What the browser tests of the chat page (tests/test_web_page.py) need from Debian's or
# Ubuntu's packages: chromium and chromedriver (chromium-driver), driven headless by
# selenium (pip: the package's 'test' extra). Installs only what is missing; needs root
# (or sudo) for that. Exit status 0 when both are there afterwards; 2 when they cannot be
# installed here (no apt-get, no root, no such packages): the browser tests then skip and
# say why; 1 when an installation failed.
#
#   bash scripts/setup_browser.sh          # install what is missing
#   bash scripts/setup_browser.sh --check  # only say what is missing
set -uo pipefail

have_browser() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }
have_driver() { command -v chromedriver >/dev/null; }

missing=()
have_browser || missing+=(chromium)
have_driver || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "setup_browser.sh: missing: ${missing[*]}" >&2
    exit 1
fi
source "$(dirname "$0")/apt_root.sh"
apt_root setup_browser.sh "${missing[*]}" \
    "install Chromium (or Chrome) and a chromedriver of the same version on the PATH yourself for the browser tests"
# the package lists may be missing on a fresh machine, or stale
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -q >/dev/null
    # Ubuntu's chromium is a snap, and some releases have no chromium-driver: not for CI
    for pkg in "${missing[@]}"; do
        if [ -z "$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
            echo "setup_browser.sh: apt has no package $pkg here; install Chromium and chromedriver yourself" >&2
            exit 2
        fi
    done
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        { echo "setup_browser.sh: apt-get could not install ${missing[*]}" >&2; exit 1; }
fi
have_browser && have_driver && exit 0
echo "setup_browser.sh: installed ${missing[*]}, yet chromium or chromedriver is not on the PATH" >&2
exit 1

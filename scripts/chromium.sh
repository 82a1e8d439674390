#!/usr/bin/env bash
# Make sure a Chromium browser is installed for the end-to-end web test; print its path.
#
# Uses the distribution's package (no Playwright browser download, which needs the internet
# beyond the package mirror). Installing needs root (or sudo without a password).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$(id -u)" -eq 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "chromium.sh: $CHROMIUM is missing and installing it needs root (or sudo -n)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Try with the package lists already present; refresh them only if that fails.
    if ! "${SUDO[@]}" apt-get install -y -q chromium >&2; then
        "${SUDO[@]}" apt-get update -q >&2
        "${SUDO[@]}" apt-get install -y -q chromium >&2
    fi
    if [[ ! -x "$CHROMIUM" ]]; then
        echo "chromium.sh: apt-get installed chromium but $CHROMIUM is still missing" >&2
        exit 1
    fi
fi

echo "$CHROMIUM"

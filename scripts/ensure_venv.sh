#!/usr/bin/env bash
# Creates the virtual environment the Makefile installs into, unless it exists: Debian 12 refuses `pip install`
# outside one (PEP 668).  Usage: ensure_venv.sh DIR [PYTHON].  The venv sees the system's site-packages, so
# whatever is already installed there is reused instead of downloaded again.
# When Python's venv module lacks ensurepip (Debian without python3-venv), installs that package as root or
# through sudo, or says which one to install.
set -euo pipefail

venv="${1:?usage: ensure_venv.sh DIR [PYTHON]}"
python="${2:-python3}"
if [ -x "$venv/bin/python" ]; then
    exit 0
fi
if ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    package="python3-venv"
    version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    if command -v apt-cache >/dev/null 2>&1 && apt-cache show "python${version}-venv" >/dev/null 2>&1; then
        package="python${version}-venv"
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
        echo "ensure_venv: installing Debian package $package (Python's venv module needs it)"
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    else
        echo "ensure_venv: $python cannot create a virtual environment; install $package (apt-get install" \
             "$package) or set VIRTUAL_ENV to an existing one, then re-run" >&2
        exit 1
    fi
fi
echo "creating virtual environment $venv (system site-packages visible)"
"$python" -m venv --system-site-packages "$venv"

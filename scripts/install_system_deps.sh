#!/usr/bin/env bash
# Installs the Debian packages fraudstream drives for real: Prometheus (server + promtool) and Chromium.
# Usage: install_system_deps.sh [--best-effort] [prometheus] [chromium]   (no package named = both)
# Idempotent: does nothing when they are present. Needs root (CI runs as root) or sudo.  With --best-effort a
# package that cannot be installed here is reported with the command that would install it, and the script
# succeeds anyway (the demo runs without Prometheus; the tests need both).
set -euo pipefail

best_effort=0
wanted=()
for arg in "$@"; do
    case "$arg" in
        --best-effort) best_effort=1 ;;
        prometheus|chromium) wanted+=("$arg") ;;
        *) echo "install_system_deps: unknown argument '$arg' (expected --best-effort, prometheus, chromium)" >&2
           exit 2 ;;
    esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=(prometheus chromium)

missing=()
for package in "${wanted[@]}"; do
    case "$package" in
        prometheus) command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
                        || missing+=(prometheus) ;;
        chromium) command -v chromium >/dev/null 2>&1 || missing+=(chromium) ;;
    esac
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

give_up() {
    echo "install_system_deps: $1; install ${missing[*]} (Debian: apt-get install ${missing[*]}) and re-run" >&2
    if [ "$best_effort" -eq 1 ]; then exit 0; fi
    exit 1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then SUDO="sudo";
    elif command -v sudo >/dev/null 2>&1 && [ "$best_effort" -eq 0 ]; then SUDO="sudo";
    else give_up "need root to install ${missing[*]}"; fi
fi
command -v apt-get >/dev/null 2>&1 || give_up "no apt-get here"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
then
    give_up "apt-get could not install them"
fi

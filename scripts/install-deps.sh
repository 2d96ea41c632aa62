#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks run against: redis-server, redis-tools
# (redis-cli, redis-benchmark) and openssl from Debian, plus any Debian packages named as
# arguments. With --with-moto it also installs moto (a local AWS Secrets Manager) from PyPI.
set -euo pipefail

with_moto=false
packages=(redis-server redis-tools openssl)
for arg in "$@"; do
    case "$arg" in
        --with-moto) with_moto=true ;;
        *) packages+=("$arg") ;;
    esac
done

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # policy-rc.d keeps the packages from starting their own servers on the default ports.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if $with_moto && ! python3 -c "import moto.server, flask, flask_cors" 2>/dev/null; then
    echo "Installing moto (a local Secrets Manager for the tests)" >&2
    python3 -m pip install -q --disable-pip-version-check 'moto[secretsmanager]' flask flask-cors
fi

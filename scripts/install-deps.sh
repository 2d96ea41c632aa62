#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks run against: redis-server, redis-tools
# (redis-cli, redis-benchmark) and openssl from Debian, plus any Debian packages named as
# arguments. With --with-moto it also installs moto (a local AWS Secrets Manager) from PyPI;
# with --with-valkey, valkey-server 8 from Debian's backports (the suite runs against it too);
# with --with-clients, the client libraries the cluster tests drive (redis-py from PyPI, ioredis
# from npm into tests/cluster/node_modules, as tests/cluster/package-lock.json pins it).
set -euo pipefail

with_moto=false
with_valkey=false
with_clients=false
packages=(redis-server redis-tools openssl)
for arg in "$@"; do
    case "$arg" in
        --with-moto) with_moto=true ;;
        --with-valkey) with_valkey=true ;;
        --with-clients) with_clients=true ;;
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

# apt_install [APT-GET ARGS...]: refreshes the lists and installs, with policy-rc.d keeping
# the packages from starting their own servers on the default ports.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}" >&2
    apt_install "${missing[@]}"
fi

# Valkey 8 is in bookworm-backports (Debian's own archive); the suite is added once.
if $with_valkey && ! command -v valkey-server >/dev/null; then
    echo "Installing valkey-server from backports" >&2
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    if ! grep -rqs -- "$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$codename" | $sudo tee /etc/apt/sources.list.d/redis-auth-proxy-backports.sources >/dev/null
    fi
    apt_install -t "$codename-backports" valkey-server
fi

if $with_moto && ! python3 -c "import moto.server, flask, flask_cors" 2>/dev/null; then
    echo "Installing moto (a local Secrets Manager for the tests)" >&2
    python3 -m pip install -q --disable-pip-version-check 'moto[secretsmanager]' flask flask-cors
fi

if $with_clients && ! python3 -c "import redis.cluster" 2>/dev/null; then
    echo "Installing redis-py (a cluster client for the tests)" >&2
    python3 -m pip install -q --disable-pip-version-check 'redis>=7.4,<9'
fi

if $with_clients && [ ! -d "$(dirname "$0")/../tests/cluster/node_modules/ioredis" ]; then
    echo "Installing ioredis (a cluster client for the tests)" >&2
    (cd "$(dirname "$0")/../tests/cluster" && npm ci --no-audit --no-fund --loglevel=error)
fi

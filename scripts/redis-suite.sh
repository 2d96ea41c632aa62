#!/usr/bin/env bash
# Redis's own test suite as a compatibility check. Fetches Redis's source with `apt-get source
# redis` (Debian's deb-src, no other download), then runs each chosen unit twice in external
# mode on fresh servers: directly against a plain redis-server, and through redis-auth-proxy
# against a TLS redis-server with a token. Prints the tests that pass directly but not through
# the proxy, and exits 1 if there are any beyond those skipped with --skiptest (the ones
# docs/compatibility.md lists, with why).
#
# Usage: scripts/redis-suite.sh [--all | UNIT...]     (default: the quick subset CI runs)
#   REDIS_SUITE_TAGS     runtest --tags filter (default: -slow)
#   REDIS_SUITE_NO_SKIP  set to run the skipped tests too (to see why they are skipped)
#   REDIS_SUITE_PROXY_FLAGS  more flags for the proxy, e.g. --multiplex (word-split)
# Everything stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

quick=(unit/protocol unit/pubsub unit/multi unit/tracking unit/scripting unit/introspection-2
    unit/info-command unit/querybuf)
# Tests that differ through the proxy by design or race across connections; each is explained
# in docs/compatibility.md. Names as runtest prints them.
skipped=(
    # Interception: the client's AUTH never reaches the server, so MONITOR cannot show it.
    "MONITOR supports redacting command arguments"
    # Ordering across connections: a new connection's first bytes wait for TLS and AUTH.
    "PUBLISH/SUBSCRIBE after UNSUBSCRIBE without arguments"
    "PUBLISH/PSUBSCRIBE after PUNSUBSCRIBE without arguments"
    "BRPOPLPUSH does not affect WATCH while still blocked"
    "Blocking XREADGROUP: key deleted"
    # Following the primary: the server demoted by hand (REPLICAOF) is a failover to the proxy,
    # which waits --failover-timeout for a primary, then passes READONLY on and closes.
    "MULTI / EXEC with REPLICAOF"
    # Following the primary: a session whose server connection was killed moves to a new one.
    "CLIENT KILL SKIPME YES/NO will kill all clients"
)

# With --multiplex (REDIS_SUITE_PROXY_FLAGS), the tests where another connection must get BUSY
# while a script runs: on the script's lane it waits behind the script instead, and the test,
# which then never kills the script, would hang (docs/compatibility.md).
multiplex_skipped=(
    "Timedout read-only scripts can be killed by SCRIPT KILL"
    "Timedout read-only scripts can be killed by SCRIPT KILL even when use pcall"
    "Timedout script does not cause a false dead client"
    "Timedout script link is still usable after Lua returns"
    "Timedout scripts and unblocked command"
    "Timedout scripts that modified data can't be killed by SCRIPT KILL"
    "SHUTDOWN NOSAVE can kill a timedout script anyway"
)
case " ${REDIS_SUITE_PROXY_FLAGS:-} " in
    *" --multiplex "*) skipped+=("${multiplex_skipped[@]}") ;;
esac

scripts/install-deps.sh tcl dpkg-dev
suite_dir="$PWD/target/redis-suite"
source_dir="$(find "$suite_dir" -maxdepth 1 -type d -name 'redis-7*' 2>/dev/null | head -1 || true)"
if [ -z "$source_dir" ]; then
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! grep -rqs '^Types: deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$codename" | $sudo tee /etc/apt/sources.list.d/redis-auth-proxy-src.sources >/dev/null
        $sudo apt-get update -qq
    fi
    mkdir -p "$suite_dir"
    (cd "$suite_dir" && apt-get source -qq redis >/dev/null 2>&1)
    source_dir="$(find "$suite_dir" -maxdepth 1 -type d -name 'redis-7*' | head -1)"
fi
cargo build --quiet
proxy_bin="$PWD/target/debug/redis-auth-proxy"

units=("${quick[@]}")
if [ "${1:-}" = "--all" ]; then
    mapfile -t units < <(cd "$source_dir/tests" && find unit -name '*.tcl' ! -path '*/type/*' \
        ! -path 'unit/cluster/*' ! -path 'unit/moduleapi/*' | sed 's/\.tcl$//' | sort; \
        cd "$source_dir/tests" && find unit/type -name '*.tcl' | sed 's/\.tcl$//' | sort)
elif [ $# -gt 0 ]; then
    units=("$@")
fi

use_work_dir rap-redis-suite
make_certs "$work"
token="suite-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$token" > "$work/token"
server_flags=(--bind 127.0.0.1 --save "" --appendonly no --enable-debug-command yes
    --enable-protected-configs yes --enable-module-command yes)
skip_args=()
if [ -z "${REDIS_SUITE_NO_SKIP:-}" ]; then
    for name in "${skipped[@]}"; do skip_args+=(--skiptest "$name"); done
fi

# run_unit MODE UNIT OUT: fresh server(s), the unit in external mode, results in OUT.
run_unit() {
    local mode="$1" unit="$2" out="$3" port dir
    local started=()
    dir="$(mktemp -d "$work/server.XXXXXX")"
    port="$(free_port)"
    if [ "$mode" = direct ]; then
        redis-server --port "$port" "${server_flags[@]}" --dir "$dir" --logfile "$dir/log" &
        started+=($!)
        wait_for "redis-server" redis-cli -p "$port" PING
    else
        local tls_port
        tls_port="$(free_port)"
        redis-server --port 0 --tls-port "$tls_port" --tls-cert-file "$work/redis.crt" \
            --tls-key-file "$work/redis.key" --tls-ca-cert-file "$work/ca.crt" \
            --tls-auth-clients no --requirepass "$token" "${server_flags[@]}" \
            --dir "$dir" --logfile "$dir/log" &
        started+=($!)
        # shellcheck disable=SC2086 # REDIS_SUITE_PROXY_FLAGS is a list of flags
        "$proxy_bin" --listen "127.0.0.1:$port" --upstream "localhost:$tls_port" \
            --tls-ca-file "$work/ca.crt" --token-file "$work/token" --admin-listen off \
            --log-level error ${REDIS_SUITE_PROXY_FLAGS:-} 2>"$dir/proxy.log" &
        started+=($!)
        wait_for "redis-auth-proxy" redis-cli -p "$port" PING
    fi
    (cd "$source_dir" && timeout 900 ./runtest --host 127.0.0.1 --port "$port" --singledb \
        --single "$unit" --tags "${REDIS_SUITE_TAGS:--slow}" "${skip_args[@]}" \
        --timeout 120 >"$out" 2>&1) || true
    for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# Test names that passed, one per line.
passed() { sed -E 's/\x1b\[[0-9;]*m//g' "$1" | sed -nE 's/^\[ok\]: (.*) \([0-9]+ ms\)$/\1/p' | sort -u; }

total_direct=0 total_proxy=0 lost=0
for unit in "${units[@]}"; do
    name="${unit//\//_}"
    run_unit direct "$unit" "$work/$name.direct"
    run_unit proxy "$unit" "$work/$name.proxy"
    passed "$work/$name.direct" > "$work/$name.direct.ok"
    passed "$work/$name.proxy" > "$work/$name.proxy.ok"
    d="$(wc -l < "$work/$name.direct.ok")" p="$(wc -l < "$work/$name.proxy.ok")"
    total_direct=$((total_direct + d)) total_proxy=$((total_proxy + p))
    missing="$(comm -23 "$work/$name.direct.ok" "$work/$name.proxy.ok")"
    printf '%-28s direct %4d  proxy %4d\n' "$unit" "$d" "$p"
    if [ -n "$missing" ]; then
        lost=$((lost + $(printf '%s\n' "$missing" | wc -l)))
        printf '%s\n' "$missing" | sed 's/^/    passes directly, not through the proxy: /'
    fi
done
echo "Redis test suite: $total_direct passed directly, $total_proxy through the proxy, $lost lost"
[ "$lost" -eq 0 ]

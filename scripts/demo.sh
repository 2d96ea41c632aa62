#!/usr/bin/env bash
# End-to-end demo on a fresh Debian machine: installs redis-server, makes a CA and a server
# certificate, starts redis with TLS only and a token, starts redis-auth-proxy in front of it,
# shows redis-cli working through the proxy with no password and no TLS, then rotates the token
# the ElastiCache way (ROTATE, then SET) while a client keeps connecting, and prints the client's
# errors (none) and the proxy's counters. Everything it starts it stops; everything stays on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

scripts/install-deps.sh
cargo build --quiet
bin="$PWD/target/debug/redis-auth-proxy"

use_work_dir redis-auth-proxy-demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Certificates: a CA and a server certificate for localhost"
make_certs "$work"
echo "made $work/ca.crt and a localhost certificate"

step "redis-server: TLS only, with an AUTH token (like ElastiCache with in-transit encryption)"
token="demo-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$token" > "$work/token"
chmod 600 "$work/token"
redis_port="$(free_port)"
start_tls_redis "$redis_port"
echo "redis-server is on localhost:$redis_port (TLS); the token is in $work/token"

step "redis-auth-proxy: plain RESP on 127.0.0.1, TLS + AUTH upstream"
proxy_port="$(free_port)"
admin_port="$(free_port)"
"$bin" run --listen "127.0.0.1:$proxy_port" --upstream "localhost:$redis_port" \
    --tls-ca-file "$work/ca.crt" --token-file "$work/token" --log-level warn \
    --admin-listen "127.0.0.1:$admin_port" &
pids+=($!)
wait_for "redis-auth-proxy" redis-cli -p "$proxy_port" PING
"$bin" check --listen "127.0.0.1:$proxy_port" --upstream "localhost:$redis_port" \
    --tls-ca-file "$work/ca.crt" --token-file "$work/token"

step "The application's view: redis-cli, no password, no TLS"
set -x
redis-cli -p "$proxy_port" SET greeting "hello through the proxy"
redis-cli -p "$proxy_port" GET greeting
redis-cli -p "$proxy_port" -a some-old-password --no-auth-warning INCR visits
{ set +x; } 2>/dev/null

step "Without the proxy the same server wants TLS and the token"
set -x
redis-cli --tls --cacert "$work/ca.crt" -h localhost -p "$redis_port" GET greeting || true
{ set +x; } 2>/dev/null

# The server's own admin access, with a token the application never sees.
server() {
    local pass="$1"; shift
    redis-cli --tls --cacert "$work/ca.crt" -h localhost -p "$redis_port" --user default \
        --pass "$pass" --no-auth-warning "$@"
}
# metric NAME [LABEL]: the sum of NAME's series (with LABEL, e.g. result="changed") in the
# proxy's /metrics, 0 when absent.
metric() {
    exec 3<>"/dev/tcp/127.0.0.1/$admin_port"
    printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
    awk -v name="redis_auth_proxy_$1" -v label="${2:-}" '
        (index($0, name "{") == 1 || index($0, name " ") == 1) && index($0, label) { sum += $NF }
        END { print sum + 0 }' <&3
    exec 3<&-
}
# Conditions polled by wait_for (a function, so each poll reads afresh).
reloads_above() { [ "$(metric token_reloads_total 'result="changed"')" -gt "$1" ]; }
requests_above() { [ "$(server "$new_token" GET demo:requests)" -gt "$1" ]; }
client_started() { [ -n "$(server "$token" GET demo:requests)" ]; }

# Replaces the token file in one step, as a Kubernetes secret update does.
write_token_file() {
    printf '%s\n' "$@" > "$work/token.new"
    chmod 600 "$work/token.new"
    mv "$work/token.new" "$work/token"
}

step "Token rotation the ElastiCache way, while a client opens a connection per request"
# The client: a new connection (so a new AUTH upstream) for every INCR, until told to stop.
(
    ok=0 failed=0
    while [ ! -e "$work/stop" ] && [ $((ok + failed)) -lt 20000 ]; do
        if reply="$(redis-cli -p "$proxy_port" INCR demo:requests 2>&1)" \
            && [[ "$reply" =~ ^[0-9]+$ ]]; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
            echo "$reply" >> "$work/client-errors"
        fi
    done
    echo "$ok $failed" > "$work/client-result"
) &
client=$!
wait_for "the client's first request" client_started
reloads_before="$(metric token_reloads_total 'result="changed"')"

new_token="demo-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "ROTATE: the server accepts the old and the new token; the token file gains the new one"
server "$token" ACL SETUSER default ">$new_token" >/dev/null
write_token_file "$new_token" "$token"
wait_for "the proxy to load the new token" reloads_above "$reloads_before"
echo "SET: only the new token is valid; the token file holds only the new one"
server "$new_token" ACL SETUSER default "<$token" >/dev/null
write_token_file "$new_token"
wait_for "the proxy to drop the old token" reloads_above $((reloads_before + 1))
# Let the client go on with only the new token for a moment.
requests_at_set="$(server "$new_token" GET demo:requests)"
wait_for "more requests after SET" requests_above $((requests_at_set + 50))
touch "$work/stop"
wait "$client"
read -r ok failed < "$work/client-result"
echo "client requests: $ok answered, $failed failed"
if [ -s "$work/client-errors" ]; then sort "$work/client-errors" | uniq -c; fi
echo "proxy: token reloads that changed the tokens: $(metric token_reloads_total 'result="changed"')" \
    "(one at start), fallbacks to the previous token: $(metric token_fallbacks_total)," \
    "rejected AUTHs: $(metric upstream_auth_attempts_total 'result="rejected"')"
echo "the old token no longer opens the server:"
server "$token" PING 2>&1 | head -1 || true

step "Done; stopping what the demo started"

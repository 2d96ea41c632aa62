#!/usr/bin/env bash
# End-to-end demo on a fresh Debian machine: installs redis-server, makes a CA and a server
# certificate, starts redis with TLS only and a token, starts redis-auth-proxy in front of it,
# and shows redis-cli working through the proxy with no password and no TLS. Everything it
# starts it stops; everything stays on 127.0.0.1.
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
redis-server --port 0 --tls-port "$redis_port" --bind 127.0.0.1 \
    --tls-cert-file "$work/redis.crt" --tls-key-file "$work/redis.key" \
    --tls-ca-cert-file "$work/ca.crt" --tls-auth-clients no \
    --requirepass "$token" --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
wait_for "redis-server" redis-cli --tls --cacert "$work/ca.crt" -h localhost -p "$redis_port" \
    --user default --pass "$token" --no-auth-warning PING
echo "redis-server is on localhost:$redis_port (TLS); the token is in $work/token"

step "redis-auth-proxy: plain RESP on 127.0.0.1, TLS + AUTH upstream"
proxy_port="$(free_port)"
"$bin" run --listen "127.0.0.1:$proxy_port" --upstream "localhost:$redis_port" \
    --tls-ca-file "$work/ca.crt" --token-file "$work/token" --log-level warn &
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

step "Done; stopping what the demo started"

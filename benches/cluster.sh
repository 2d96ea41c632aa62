#!/usr/bin/env bash
# Cluster-mode benchmark: `redis-benchmark --cluster` against a TLS Redis Cluster (three
# primaries, tls-cluster, requirepass) directly (TLS, with the password) and through
# redis-auth-proxy --cluster (plain RESP on loopback, no password), and through a second one
# with --multiplex, alternating, REPEATS times. The table gives medians and each proxy's rate
# as a ratio of the direct one.
#
# Usage: benches/cluster.sh [REPEATS]   (default 3; BENCH_REQUESTS, default 200000)
# Everything stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

repeats="${1:-3}"
requests="${BENCH_REQUESTS:-200000}"
cargo build --release --quiet
proxy_bin="$PWD/target/release/redis-auth-proxy"
use_work_dir rap-bench-cluster
make_certs "$work"
make_token
tls=(--tls --cacert "$work/ca.crt")

# Three nodes whose cluster bus ports (+10000) are free too.
ports=()
while [ ${#ports[@]} -lt 3 ]; do
    port="$(free_port)"
    (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null && continue
    ports+=("$port")
done
for port in "${ports[@]}"; do
    mkdir -p "$work/$port"
    redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 \
        --tls-cert-file "$work/redis.crt" --tls-key-file "$work/redis.key" \
        --tls-ca-cert-file "$work/ca.crt" --tls-auth-clients no --tls-cluster yes \
        --cluster-enabled yes --cluster-config-file "$work/$port/nodes.conf" \
        --requirepass "$token" --masterauth "$token" --save "" --appendonly no \
        --dir "$work/$port" --logfile "$work/$port/redis.log" &
    pids+=($!)
    wait_for "node $port" redis-cli "${tls[@]}" -p "$port" -a "$token" --no-auth-warning PING
done
redis-cli "${tls[@]}" -a "$token" --no-auth-warning --cluster create \
    "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
cluster_ok() {
    for port in "${ports[@]}"; do
        redis-cli "${tls[@]}" -p "$port" -a "$token" --no-auth-warning CLUSTER INFO \
            | grep -q cluster_state:ok || return 1
    done
}
wait_for "the cluster" cluster_ok

proxy_port="$(free_port)"
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$(free_port)" \
    --upstream "127.0.0.1:${ports[0]}" --tls-ca-file "$work/ca.crt" --token-file "$work/token" \
    --cluster --cluster-ports 43100-43199 --log-level warn &
pids+=($!)
wait_for "redis-auth-proxy" redis-cli -p "$proxy_port" PING
multiplex_port="$(free_port)"
"$proxy_bin" --listen "127.0.0.1:$multiplex_port" --admin-listen "127.0.0.1:$(free_port)" \
    --upstream "127.0.0.1:${ports[0]}" --tls-ca-file "$work/ca.crt" --token-file "$work/token" \
    --cluster --cluster-ports 43200-43299 --multiplex --log-level warn &
pids+=($!)
wait_for "redis-auth-proxy --multiplex" redis-cli -p "$multiplex_port" PING

# rate TARGET PIPELINE TEST: requests per second of one redis-benchmark run.
rate() {
    local args=(-p "$proxy_port")
    if [ "$1" = direct ]; then
        args=("${tls[@]}" -p "${ports[0]}" -a "$token")
    elif [ "$1" = multiplex ]; then
        args=(-p "$multiplex_port")
    fi
    redis-benchmark --cluster -h 127.0.0.1 "${args[@]}" -c 50 -n "$requests" -P "$2" -t "$3" -q \
        2>/dev/null | tr '\r' '\n' | awk -F'[: ]+' '/requests per second/ { print $2; exit }'
}

results="$work/results.tsv"
for _ in $(seq 1 "$repeats"); do
    for pipeline in 1 16; do
        for test in set get; do
            for target in direct proxy multiplex; do
                printf '%s\t%s\t%s\t%s\n' "$test" "$pipeline" "$target" \
                    "$(rate "$target" "$pipeline" "$test")" >> "$results"
            done
        done
    done
done

echo "| workload (redis-benchmark --cluster, 50 clients, $requests requests) | direct TLS | redis-auth-proxy | proxy / direct | --multiplex | multiplex / direct |"
echo "|---|---|---|---|---|---|"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    test, pipeline, target, rate = line.split()
    rows.setdefault((test, int(pipeline)), {}).setdefault(target, []).append(float(rate))
for (test, pipeline), by in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0] != "set")):
    direct, proxy = statistics.median(by["direct"]), statistics.median(by["proxy"])
    multiplex = statistics.median(by["multiplex"])
    name = f"{test.upper()}" + ("" if pipeline == 1 else f", pipeline {pipeline}")
    print(f"| {name} | {direct:,.0f}/s | {proxy:,.0f}/s | {proxy / direct:.2f} "
          f"| {multiplex:,.0f}/s | {multiplex / direct:.2f} |")
PY

#!/usr/bin/env bash
# Connection-per-request benchmark for --upstream-reuse: haproxy (TCP mode, TLS toward the
# server, the client sending the token), redis-auth-proxy as by default, and redis-auth-proxy with
# --upstream-reuse, side by side in one run against one TLS redis-server with a token.
# `redis-benchmark -k 0 -c 50 -t ping_mbulk` opens a new connection for every request; the
# table gives the rate and the server's CPU per client connection (from /proc/PID/stat).
#
# Usage: benches/reuse.sh [REPEATS] (default 3). Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

repeats="${1:-3}"
requests="${BENCH_REQUESTS:-6000}"
scripts/install-deps.sh haproxy
cargo build --release --quiet
proxy_bin="$PWD/target/release/redis-auth-proxy"
use_work_dir rap-bench-reuse
make_certs "$work"
make_token

redis_port="$(free_port)"
start_tls_redis "$redis_port" --maxclients 20000

haproxy_port="$(free_port)"
haproxy_config "$haproxy_port" "$redis_port" > "$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db &
pids+=($!)
start_proxy() {
    local port="$1"; shift
    "$proxy_bin" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$redis_port" \
        --tls-server-name localhost --tls-ca-file "$work/ca.crt" --token-file "$work/token" \
        --admin-listen off --log-level warn "$@" &
    pids+=($!)
}
proxy_port="$(free_port)"
start_proxy "$proxy_port"
reuse_port="$(free_port)"
start_proxy "$reuse_port" --upstream-reuse --upstream-pool-size "${BENCH_POOL:-128}"
wait_for haproxy redis-cli -p "$haproxy_port" -a "$token" --no-auth-warning PING
wait_for redis-auth-proxy redis-cli -p "$proxy_port" PING
wait_for "redis-auth-proxy (reuse)" redis-cli -p "$reuse_port" PING

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
results="$work/results.tsv"
for rep in $(seq 1 "$repeats"); do
  for workload in ping p2; do
    for target in haproxy proxy reuse; do
        case "$target" in
            haproxy) args=(-p "$haproxy_port" -a "$token") ;;
            proxy) args=(-p "$proxy_port") ;;
            reuse) args=(-p "$reuse_port") ;;
        esac
        # ping: one command per connection; p2: two (SET, SET: what a PHP request might do).
        case "$workload" in
            ping) shape=(-t ping_mbulk); per=1 ;;
            p2) shape=(-t set -P 2); per=2 ;;
        esac
        before="$(cpu_ticks "$redis_pid")"
        rps="$(redis-benchmark -h 127.0.0.1 "${args[@]}" -k 0 -c 50 -n "$requests" "${shape[@]}" --csv 2>/dev/null \
            | grep -v '^"test"' | cut -d, -f2 | tr -d '"')"
        after="$(cpu_ticks "$redis_pid")"
        python3 -c "print('$workload\t$target\t$rep\t%.1f\t%.1f' % ($rps / $per, ($after - $before) / $hz / ($requests / $per) * 1e6))" >> "$results"
    done
  done
done
python3 - "$results" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    workload, target, rep, conns, cpu = line.split("\t")
    rows[(workload, target)].append((float(conns), float(cpu)))
med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
print("| workload (`-k 0 -c 50`: a new connection each time) | target | connections/s | / haproxy | server CPU per connection | / haproxy |")
print("|---|---|---|---|---|---|")
for workload, title in [("ping", "one PING per connection"), ("p2", "two SETs per connection (`-P 2`)")]:
    h = med[(workload, "haproxy")]
    for t, name in [("haproxy", "haproxy"), ("proxy", "redis-auth-proxy"), ("reuse", "redis-auth-proxy --upstream-reuse")]:
        r, c = med[(workload, t)]
        print(f"| {title} | {name} | {r:,.0f} | {r / h[0]:.2f} | {c:.0f} µs | {c / h[1]:.2f} |")
PY

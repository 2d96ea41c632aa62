#!/usr/bin/env bash
# Multiplexing benchmark: the direct TLS connection, haproxy (originating TLS, the application
# carrying the token), redis-auth-proxy one connection per client, and redis-auth-proxy with
# --multiplex (two shared connections), side by side in one run against one TLS
# redis-server. Workloads alternate between the four and repeat; the table shows medians,
# ratios against haproxy, the server's CPU per request, how many connections 1,000 open
# clients cost the server, and the proxies' memory per idle client.
#
# Usage: benches/multiplex.sh [REPEATS]   (default 3; BENCH_SCALE=0.2 for a quick smoke run)
# Raw results: target/multiplex-results.tsv.
# Everything stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

repeats="${1:-3}"
scale="${BENCH_SCALE:-1}"
idle_clients=1000
ulimit -n "$(ulimit -Hn)"

scripts/install-deps.sh haproxy
cargo build --release --quiet
proxy_bin="$PWD/target/release/redis-auth-proxy"
use_work_dir rap-mux-bench
n() { python3 -c "print(max(1, int($1 * $scale)))"; }

make_certs "$work"
make_token
redis_port="$(free_port)"
start_tls_redis "$redis_port" --maxclients 20000
server_pid="$redis_pid"

haproxy_port="$(free_port)"
haproxy_config "$haproxy_port" "$redis_port" > "$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db &
haproxy_pid=$!
pids+=($haproxy_pid)

start_proxy() {
    "$proxy_bin" --listen "127.0.0.1:$1" --upstream "127.0.0.1:$redis_port" --tls-server-name localhost \
        --tls-ca-file "$work/ca.crt" --token-file "$work/token" --admin-listen off --log-level warn "${@:2}" &
    pids+=($!)
    last_pid=$!
}
proxy_port="$(free_port)"
start_proxy "$proxy_port"
proxy_pid=$last_pid
mux_port="$(free_port)"
start_proxy "$mux_port" --multiplex
mux_pid=$last_pid

wait_for haproxy redis-cli -p "$haproxy_port" -a "$token" --no-auth-warning PING
wait_for redis-auth-proxy redis-cli -p "$proxy_port" PING
wait_for "redis-auth-proxy --multiplex" redis-cli -p "$mux_port" PING

targets=(direct haproxy proxy multiplex)
declare -A target_pid=([haproxy]=$haproxy_pid [proxy]=$proxy_pid [multiplex]=$mux_pid)
target_args() {
    case "$1" in
        direct) echo "--tls --cacert $work/ca.crt -h localhost -p $redis_port -a $token" ;;
        haproxy) echo "-h 127.0.0.1 -p $haproxy_port -a $token" ;;
        proxy) echo "-h 127.0.0.1 -p $proxy_port" ;;
        multiplex) echo "-h 127.0.0.1 -p $mux_port" ;;
    esac
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
ticks_per_second="$(getconf CLK_TCK)"
server_clients() {
    redis-cli --tls --cacert "$work/ca.crt" -h localhost -p "$redis_port" --user default --pass "$token" \
        --no-auth-warning INFO clients | awk -F: '/^connected_clients/ {print $2+0}'
}

mkdir -p target
results="target/multiplex-results.tsv"
: > "$results"

# run_workload NAME TESTS REQUESTS EXTRA-ARGS...: one redis-benchmark run per target, in turn,
# with the proxy's and the server's CPU time over the run.
run_workload() {
    local name="$1" tests="$2" requests="$3"; shift 3
    local target before after server_before server_after csv total
    for target in "${targets[@]}"; do
        before=0
        [ "$target" = direct ] || before="$(cpu_ticks "${target_pid[$target]}")"
        server_before="$(cpu_ticks "$server_pid")"
        # shellcheck disable=SC2046
        csv="$(redis-benchmark $(target_args "$target") -t "$tests" -n "$requests" "$@" --csv 2>/dev/null | grep -v '^"test"')"
        server_after="$(cpu_ticks "$server_pid")"
        total=$((requests * $(echo "$csv" | wc -l)))
        python3 -c "print('$name\t$target\t$rep\tserver_cpu_us_per_req\t%.3f' % (($server_after - $server_before) / $ticks_per_second / $total * 1e6))" >> "$results"
        if [ "$target" != direct ]; then
            after="$(cpu_ticks "${target_pid[$target]}")"
            python3 -c "print('$name\t$target\t$rep\tcpu_us_per_req\t%.3f' % (($after - $before) / $ticks_per_second / $total * 1e6))" >> "$results"
        fi
        echo "$csv" | python3 -c "
import csv, sys
rows = list(csv.reader(sys.stdin))
print('$name\t$target\t$rep\trps\t%.1f' % (sum(float(r[1]) for r in rows) / len(rows)))
print('$name\t$target\t$rep\tp50_ms\t%s' % rows[0][4])
" >> "$results"
    done
}

echo "Benchmarking: $repeats repeats, scale $scale." >&2
for rep in $(seq 1 "$repeats"); do
    echo "  repeat $rep/$repeats" >&2
    run_workload "no pipelining, 50 clients" set,get "$(n 400000)" -c 50 -d 64
    run_workload "pipeline 16, 50 clients" set,get "$(n 3000000)" -c 50 -d 64 -P 16
    run_workload "one client" set,get "$(n 40000)" -c 1 -d 64
done

# 1,000 idle clients, each having sent one PING: the server's connections and the proxy's
# memory per client.
idle() {
    local target="$1" port="$2" auth="$3" pid="$4" before after held
    before="$(rss_kib "$pid")"
    python3 - "$port" "$auth" "$idle_clients" "$work/idle-$target" <<'PY' &
import socket, sys, time
port, auth, count, ready = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
hello = (f"*2\r\n$4\r\nAUTH\r\n${len(auth)}\r\n{auth}\r\n" if auth else "") + "*1\r\n$4\r\nPING\r\n"
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
for s in socks:
    s.sendall(hello.encode())
for s in socks:
    got = b""
    while not got.endswith(b"+PONG\r\n"):
        got += s.recv(100)
open(ready, "w").write("ready")
time.sleep(600)
PY
    local holder=$!
    WAIT_TICKS=2000 wait_for "$idle_clients idle clients through $target" test -e "$work/idle-$target"
    sleep 1
    after="$(rss_kib "$pid")"
    held="$(server_clients)"
    kill "$holder"; wait "$holder" 2>/dev/null || true
    python3 -c "print('idle\t$target\t1\tkib_per_client\t%.1f' % (($after - $before) / $idle_clients))" >> "$results"
    # The server's own count includes the one asking.
    echo -e "idle\t$target\t1\tserver_connections\t$((held - 1))" >> "$results"
    sleep 2
}
idle haproxy "$haproxy_port" "$token" "$haproxy_pid"
idle proxy "$proxy_port" "" "$proxy_pid"
idle multiplex "$mux_port" "" "$mux_pid"

python3 - "$results" <<'PY'
import statistics, sys, collections
data = collections.defaultdict(list)
for line in open(sys.argv[1]):
    workload, target, rep, metric, value = line.rstrip("\n").split("\t")
    data[(workload, target, metric)].append(float(value))
med = {k: statistics.median(v) for k, v in data.items()}
targets = ["direct", "haproxy", "proxy", "multiplex"]
workloads = ["no pipelining, 50 clients", "pipeline 16, 50 clients", "one client"]
print("| workload | direct TLS | haproxy | proxy, 1:1 | proxy, --multiplex | multiplex / haproxy | multiplex / 1:1 |")
print("|---|---|---|---|---|---|---|")
for w in workloads:
    v = {t: med[(w, t, "rps")] for t in targets}
    print(f"| {w} | " + " | ".join(f"{v[t]:,.0f}/s" for t in targets)
          + f" | {v['multiplex'] / v['haproxy']:.2f} | {v['multiplex'] / v['proxy']:.2f} |")
print()
print("| server CPU µs per request | direct TLS | haproxy | proxy, 1:1 | proxy, --multiplex | multiplex / haproxy |")
print("|---|---|---|---|---|---|")
for w in workloads:
    v = {t: med[(w, t, "server_cpu_us_per_req")] for t in targets}
    print(f"| {w} | " + " | ".join(f"{v[t]:.2f}" for t in targets) + f" | {v['multiplex'] / v['haproxy']:.2f} |")
print()
print("| proxy CPU µs per request | haproxy | proxy, 1:1 | proxy, --multiplex |")
print("|---|---|---|---|")
for w in workloads:
    print(f"| {w} | " + " | ".join(f"{med[(w, t, 'cpu_us_per_req')]:.2f}" for t in targets[1:]) + " |")
print()
print("| one client, p50 (ms) | " + " | ".join(f"{med[('one client', t, 'p50_ms')]:.3f}" for t in targets) + " |")
print()
print("| 1,000 idle clients | haproxy | proxy, 1:1 | proxy, --multiplex |")
print("|---|---|---|---|")
print("| server connections | " + " | ".join(f"{med[('idle', t, 'server_connections')]:.0f}" for t in targets[1:]) + " |")
print("| proxy KiB per client | " + " | ".join(f"{med[('idle', t, 'kib_per_client')]:.1f}" for t in targets[1:]) + " |")
PY

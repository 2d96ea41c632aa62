#!/usr/bin/env bash
# End-to-end benchmark: the direct TLS connection, haproxy and stunnel (both originating TLS,
# the application carrying the token) and redis-auth-proxy, side by side in one run against
# one TLS redis-server with a token. Workloads alternate between the four configurations and
# repeat; the table shows medians and ratios against the direct connection, the proxies' CPU
# per million requests and their memory per idle connection.
#
# Usage: benches/e2e.sh [REPEATS]   (default 3; BENCH_SCALE=0.2 for a quick smoke run,
#                                   BENCH_IDLE=N idle connections, default 4000;
#                                   BENCH_SKIP_WORKLOADS=1 re-measures only the idle
#                                   connections, adding to the kept results)
# Raw results: target/e2e-results.tsv.
# Everything stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

repeats="${1:-3}"
scale="${BENCH_SCALE:-1}"
idle_connections="${BENCH_IDLE:-4000}"

# Thousands of idle connections need file descriptors in every process started below.
ulimit -n "$(ulimit -Hn)"

scripts/install-deps.sh stunnel4 haproxy
cargo build --release --quiet
proxy_bin="$PWD/target/release/redis-auth-proxy"

use_work_dir rap-bench

n() { python3 -c "print(max(1, int($1 * $scale)))"; }

# --- certificates, server, token -------------------------------------------------------------
make_certs "$work"
make_token

redis_port="$(free_port)"
start_tls_redis "$redis_port" --maxclients 20000

# --- the three proxies ------------------------------------------------------------------------
haproxy_port="$(free_port)"
haproxy_config "$haproxy_port" "$redis_port" > "$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db &
haproxy_pid=$!
pids+=($haproxy_pid)
# The same, limited to TLS 1.2 toward the server, for the TLS 1.2 new-connection row.
haproxy12_port="$(free_port)"
sed -e "s/127.0.0.1:$haproxy_port/127.0.0.1:$haproxy12_port/" -e "s/verifyhost localhost$/verifyhost localhost ssl-max-ver TLSv1.2/" \
    "$work/haproxy.cfg" > "$work/haproxy12.cfg"
haproxy -f "$work/haproxy12.cfg" -db &
haproxy12_pid=$!
pids+=($haproxy12_pid)

stunnel_port="$(free_port)"
cat > "$work/stunnel.conf" <<EOF
foreground = yes
pid =
[redis]
client = yes
accept = 127.0.0.1:$stunnel_port
connect = 127.0.0.1:$redis_port
verifyChain = yes
CAfile = $work/ca.crt
checkHost = localhost
EOF
stunnel4 "$work/stunnel.conf" 2>"$work/stunnel.log" &
stunnel_pid=$!
pids+=($stunnel_pid)
stunnel12_port="$(free_port)"
sed -e "s/127.0.0.1:$stunnel_port/127.0.0.1:$stunnel12_port/" "$work/stunnel.conf" > "$work/stunnel12.conf"
echo "sslVersionMax = TLSv1.2" >> "$work/stunnel12.conf"
stunnel4 "$work/stunnel12.conf" 2>"$work/stunnel12.log" &
stunnel12_pid=$!
pids+=($stunnel12_pid)

# Like haproxy and stunnel, the proxy is given the server's IP (no DNS lookup per connection;
# BENCHMARKS.md gives the cost of one) and checks the certificate for localhost.
proxy_port="$(free_port)"
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$redis_port" --tls-server-name localhost \
    --tls-ca-file "$work/ca.crt" --token-file "$work/token" --admin-listen off --log-level warn &
proxy_pid=$!
pids+=($proxy_pid)
proxy12_port="$(free_port)"
"$proxy_bin" --listen "127.0.0.1:$proxy12_port" --upstream "127.0.0.1:$redis_port" --tls-server-name localhost \
    --tls-max-version 1.2 \
    --tls-ca-file "$work/ca.crt" --token-file "$work/token" --admin-listen off --log-level warn &
proxy12_pid=$!
pids+=($proxy12_pid)

wait_for haproxy redis-cli -p "$haproxy_port" -a "$token" --no-auth-warning PING
wait_for stunnel redis-cli -p "$stunnel_port" -a "$token" --no-auth-warning PING
wait_for redis-auth-proxy redis-cli -p "$proxy_port" PING
wait_for "haproxy (TLS 1.2)" redis-cli -p "$haproxy12_port" -a "$token" --no-auth-warning PING
wait_for "stunnel (TLS 1.2)" redis-cli -p "$stunnel12_port" -a "$token" --no-auth-warning PING
wait_for "redis-auth-proxy (TLS 1.2)" redis-cli -p "$proxy12_port" PING

targets=(direct haproxy stunnel proxy)
declare -A target_pid=([haproxy]=$haproxy_pid [stunnel]=$stunnel_pid [proxy]=$proxy_pid)
declare -A target_pid12=([haproxy]=$haproxy12_pid [stunnel]=$stunnel12_pid [proxy]=$proxy12_pid)
tls12=""   # set for the workload that goes through the TLS 1.2 instances

# redis-benchmark arguments that reach each target (the proxies other than ours need the token).
target_args() {
    local hp=$haproxy_port sp=$stunnel_port pp=$proxy_port
    [ -z "$tls12" ] || { hp=$haproxy12_port; sp=$stunnel12_port; pp=$proxy12_port; }
    case "$1" in
        direct) echo "--tls --cacert $work/ca.crt -h localhost -p $redis_port -a $token" ;;
        haproxy) echo "-h 127.0.0.1 -p $hp -a $token" ;;
        stunnel) echo "-h 127.0.0.1 -p $sp -a $token" ;;
        proxy) echo "-h 127.0.0.1 -p $pp" ;;
    esac
}
pid_of() { if [ -z "$tls12" ]; then echo "${target_pid[$1]}"; else echo "${target_pid12[$1]}"; fi; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
ticks_per_second="$(getconf CLK_TCK)"

mkdir -p target
results="target/e2e-results.tsv"   # workload target repeat metric value; kept after the run
[ -n "${BENCH_SKIP_WORKLOADS:-}" ] || : > "$results"

# run_workload NAME TESTS REQUESTS EXTRA-ARGS...: one redis-benchmark run per target, in turn.
run_workload() {
    local name="$1" tests="$2" requests="$3"; shift 3
    local target before after csv
    for target in "${targets[@]}"; do
        before=0
        [ "$target" = direct ] || before="$(cpu_ticks "$(pid_of "$target")")"
        # shellcheck disable=SC2046
        csv="$(redis-benchmark $(target_args "$target") -t "$tests" -n "$requests" "$@" --csv 2>/dev/null | grep -v '^"test"')"
        if [ "$target" != direct ]; then
            after="$(cpu_ticks "$(pid_of "$target")")"
            local total_requests
            total_requests=$((requests * $(echo "$csv" | wc -l)))
            python3 -c "print('$name\t$target\t$rep\tcpu_us_per_req\t%.3f' % (($after - $before) / $ticks_per_second / $total_requests * 1e6))" >> "$results"
        fi
        # Mean of the tests' rates (SET and GET), and the first test's p50/p99 latency.
        echo "$csv" | python3 -c "
import csv, sys
rows = list(csv.reader(sys.stdin))
rps = sum(float(r[1]) for r in rows) / len(rows)
print('$name\t$target\t$rep\trps\t%.1f' % rps)
print('$name\t$target\t$rep\tp50_ms\t%s' % rows[0][4])
print('$name\t$target\t$rep\tp99_ms\t%s' % rows[0][6])
" >> "$results"
    done
}

echo "Benchmarking: $repeats repeats, scale $scale; results in the table below." >&2
for rep in $(seq 1 "$repeats"); do
    [ -z "${BENCH_SKIP_WORKLOADS:-}" ] || break
    echo "  repeat $rep/$repeats" >&2
    run_workload "no pipelining" set,get "$(n 400000)" -c 50 -d 64
    run_workload "pipeline 16" set,get "$(n 3000000)" -c 50 -d 64 -P 16
    run_workload "one client" set,get "$(n 40000)" -c 1 -d 64
    run_workload "new connection per request" ping_mbulk "$(n 3000)" -c 50 -k 0
    tls12=1
    run_workload "new connection per request, TLS 1.2" ping_mbulk "$(n 3000)" -c 50 -k 0
    tls12=""
    run_workload "100 KB values" set,get "$(n 4000)" -c 50 -d 100000
done

# Idle connections: RSS growth per connection, each connection having sent one command.
# A proxy that stops accepting before the count is measured on the connections it took.
idle_kib_per_connection() {
    local target="$1" port="$2" auth="$3" pid="$4"
    local before after
    before="$(rss_kib "$pid")"
    python3 - "$port" "$auth" "$idle_connections" "$work/idle-ready-$target" <<'PY' &
import socket, sys, time, resource
port, auth, count, ready = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 100, count + 100))
hello = (f"*2\r\n$4\r\nAUTH\r\n${len(auth)}\r\n{auth}\r\n" if auth else "") + "*1\r\n$4\r\nPING\r\n"
socks = []
try:
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(hello.encode())
        socks.append(s)
    for s in socks:
        got = b""
        while not got.endswith(b"+PONG\r\n"):
            chunk = s.recv(100)
            if not chunk:
                raise ConnectionError("closed")
            got += chunk
except OSError:
    # A proxy that refuses more connections: measure the ones it took.
    socks = socks[:-1]
with open(ready, "w") as f:
    f.write(str(len(socks)))
time.sleep(600)
PY
    local holder=$!
    # stunnel opens about 150 upstream TLS connections a second: allow minutes.
    WAIT_TICKS=6000 wait_for "$idle_connections idle connections through $target" test -e "$work/idle-ready-$target"
    sleep 1
    after="$(rss_kib "$pid")"
    local opened
    opened="$(cat "$work/idle-ready-$target")"
    kill "$holder"; wait "$holder" 2>/dev/null || true
    python3 -c "print('idle\t$target\t1\tkib_per_conn\t%.1f' % (($after - $before) / max(1, $opened)))" >> "$results"
    python3 -c "print('idle\t$target\t1\tconnections\t$opened')" >> "$results"
    sleep 2
    python3 -c "print('idle\t$target\t1\trss_mib_idle\t%.1f' % ($after / 1024))" >> "$results"
}
idle_kib_per_connection haproxy "$haproxy_port" "$token" "$haproxy_pid"
idle_kib_per_connection stunnel "$stunnel_port" "$token" "$stunnel_pid"
idle_kib_per_connection proxy "$proxy_port" "" "$proxy_pid"

# --- the table --------------------------------------------------------------------------------
python3 - "$results" <<'PY'
import statistics, sys, collections
data = collections.defaultdict(list)
for line in open(sys.argv[1]):
    workload, target, rep, metric, value = line.rstrip("\n").split("\t")
    data[(workload, target, metric)].append(float(value))
med = {k: statistics.median(v) for k, v in data.items()}
targets = ["direct", "haproxy", "stunnel", "proxy"]
workloads = ["no pipelining", "pipeline 16", "one client", "new connection per request", "new connection per request, TLS 1.2", "100 KB values"]
print("| workload | direct TLS | haproxy | stunnel | redis-auth-proxy | proxy / haproxy | proxy / stunnel |")
print("|---|---|---|---|---|---|---|")
for w in workloads:
    d = med.get((w, "direct", "rps"))
    if not d:
        continue
    cells = []
    for t in targets:
        v = med[(w, t, "rps")]
        cells.append(f"{v:,.0f}/s" if t == "direct" else f"{v / d:.2f} ({v:,.0f}/s)")
    p = med[(w, "proxy", "rps")]
    cells.append(f"{p / med[(w, 'haproxy', 'rps')]:.2f}")
    cells.append(f"{p / med[(w, 'stunnel', 'rps')]:.2f}")
    print(f"| {w} | " + " | ".join(cells) + " |")
print()
print("| one client, latency | direct TLS | haproxy | stunnel | redis-auth-proxy |")
print("|---|---|---|---|---|")
for m in ["p50_ms", "p99_ms"]:
    print(f"| {m.replace('_ms', '')} (ms) | " + " | ".join(f"{med[('one client', t, m)]:.3f}" for t in targets) + " |")
print()
print("| CPU µs per request (proxy process) | haproxy | stunnel | redis-auth-proxy | proxy / haproxy |")
print("|---|---|---|---|---|")
for w in workloads:
    vals = [med.get((w, t, "cpu_us_per_req")) for t in targets[1:]]
    if None in vals:
        continue
    print(f"| {w} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {vals[2] / vals[0]:.2f} |")
print()
print("| idle connections | haproxy | stunnel | redis-auth-proxy | proxy / haproxy |")
print("|---|---|---|---|---|")
kib = [med[("idle", t, "kib_per_conn")] for t in targets[1:]]
print("| KiB per idle connection | " + " | ".join(f"{v:.1f}" for v in kib) + f" | {kib[2] / kib[0]:.2f} |")
opened = [med[("idle", t, "connections")] for t in targets[1:]]
print("| idle connections held | " + " | ".join(f"{v:.0f}" for v in opened) + " | |")
rss = [med[("idle", t, "rss_mib_idle")] for t in targets[1:]]
print("| RSS with them open (MiB) | " + " | ".join(f"{v:.1f}" for v in rss) + " | |")
PY

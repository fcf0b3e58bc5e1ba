#!/usr/bin/env bash
# The benchmark: the pipeline against a bare chain of durable queues on the same broker (its
# ceiling), with latency, memory, fairness and replicas of the slowest stage (`ebox bench
# --help`). Prints figures; asserts nothing. Uses a database (ebox_bench) and a vhost
# (ebox-bench) of its own, made afresh and removed at the end (EBOX_BENCH_KEEP=1 keeps them),
# and two senders, bench-a and bench-b.
#
#   scripts/bench.sh [MESSAGES] [ebox bench options…]      (default 20000 messages)
#   scripts/bench.sh 5000 --json
#   scripts/bench.sh 200 --replicas 1 --paced-messages 100 --fairness-batch 100   (a quick look)
#   EBOX_BENCH_PROFILE=debug scripts/bench.sh 200 …   (the debug build: the test command's smoke run)
#
# EBOX_BATCH_SIZE, EBOX_PREFETCH and the other EBOX_* settings apply to the worker processes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Starts PostgreSQL and RabbitMQ only when one is not listening: scripts/services.sh may
# restart RabbitMQ to reconfigure it, which would cut every other run on the machine.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! listening 5432 || ! listening 5672; then scripts/services.sh; fi

messages=${1:-20000}
shift || true
vhost=ebox-bench
export EBOX_AMQP_URL=${EBOX_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/$vhost}
export EBOX_BENCH_SENDER_URLS=${EBOX_BENCH_SENDER_URLS:-amqp://bench-a:bench-a@127.0.0.1:5672/$vhost,amqp://bench-b:bench-b@127.0.0.1:5672/$vhost}
export EBOX_DATABASE_URL=${EBOX_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/ebox_bench}
export EBOX_SSIN_HASH_KEY=${EBOX_SSIN_HASH_KEY:-bench-only-secret-never-use-it-in-production}
# Store signs proofs of deposit: the test-only key of tests/fixtures.
export EBOX_PROOF_SIGNING_KEY_FILE=${EBOX_PROOF_SIGNING_KEY_FILE:-tests/fixtures/proof-ed25519.pem}
# The benchmark's publications hold a 10 KiB PDF (about 14 KiB of JSON): its largest message is
# 1 MiB, so that intake's prefetch is EBOX_DELIVERY_BUDGET_BYTES / 1 MiB = 64, shared among its
# lanes (docs/operations.md, "Memory"), as an operator sizes it to its senders' documents; with
# the default 16 MiB intake would hold 4 deliveries, one or two per lane.
export EBOX_MAX_MESSAGE_BYTES=${EBOX_MAX_MESSAGE_BYTES:-1048576}
export EBOX_LOG=${EBOX_LOG:-warn}
export EBOX_LOG_FORMAT=${EBOX_LOG_FORMAT:-text}

# EBOX_BENCH_PROFILE=debug measures the debug build instead: for the test command's smoke run,
# which only checks that the benchmark still works (its figures mean nothing).
profile=${EBOX_BENCH_PROFILE:-release}
case "$profile" in
  release) cargo build --locked --release -p ebox ;;
  debug) cargo build --locked -p ebox ;;
  *) echo "EBOX_BENCH_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
# A copy, so that a build running meanwhile cannot change what the worker processes run.
workdir=$(mktemp -d)
ebox="$workdir/ebox"
cp "${CARGO_TARGET_DIR:-target}/$profile/ebox" "$ebox"

admin_url="${EBOX_DATABASE_URL%/*}/postgres"
database="${EBOX_DATABASE_URL##*/}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
registry="$workdir/registry.yaml"
clean_up() {
  rm -rf "$workdir"
  if [ "${EBOX_BENCH_KEEP:-}" != 1 ]; then
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
    as_root rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    for sender in bench-a bench-b; do as_root rabbitmqctl -q delete_user "$sender" >/dev/null 2>&1 || true; done
  fi
}
trap clean_up EXIT

psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
psql "$admin_url" -qc "CREATE DATABASE $database"
as_root rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
as_root rabbitmqctl -q add_vhost "$vhost"
as_root rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
users=$(as_root rabbitmqctl -q list_users)
# Each sender with a sender's rights only: publish to ebox.publish, read its own status queue.
for sender in bench-a bench-b; do
  grep -q "^$sender[[:space:]]" <<<"$users" || as_root rabbitmqctl -q add_user "$sender" "$sender" >/dev/null
  as_root rabbitmqctl -q set_permissions -p "$vhost" "$sender" '^$' '^ebox\.publish$' "^ebox\\.status\\.$sender\$"
done
# The broker policies, as every deployment has them (dead-lettering, the delivery limit, the
# queues' bounds); as an argument, since `rabbitmqctl` reads its standard input.
policies=$("$ebox" broker policies --vhost "$vhost")
as_root bash -ec "$policies" </dev/null >/dev/null

# Two senders that may publish the demo's message type.
cat >"$registry" <<'YAML'
senders:
  - id: bench-a
    organizationId: "0406798006"
    name: {nl: RVA, fr: ONEM, de: LfA}
    applications: [{id: unemployment, name: {nl: Werkloosheid, fr: Chômage, de: Arbeitslosigkeit}}]
    messageTypes: [unemployment-certificate]
  - id: bench-b
    organizationId: "0206731645"
    name: {nl: RIZIV, fr: INAMI, de: LIKIV}
    applications: [{id: benefits, name: {nl: Uitkeringen, fr: Indemnités, de: Leistungen}}]
    messageTypes: [unemployment-certificate]
messageTypes:
  - id: unemployment-certificate
    name: {nl: Attest, fr: Attestation, de: Bescheinigung}
    validityPeriod: {validityPeriodNumber: 1, validityPeriodUnit: year}
YAML
"$ebox" migrate
"$ebox" registry load "$registry"

echo "machine: $(nproc) cores; $(uptime)" >&2
"$ebox" bench --messages "$messages" "$@"
echo "machine after: $(uptime)" >&2

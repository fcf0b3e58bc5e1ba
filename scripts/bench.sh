#!/usr/bin/env bash
# The throughput benchmark: the pipeline against a bare chain of durable queues on the same
# broker (its ceiling). Prints figures; asserts nothing. Uses a database (ebox_bench) and a
# vhost (ebox-bench) of its own, both made afresh, and a sender `bench`.
#
#   scripts/bench.sh [MESSAGES]        (default 2000; EBOX_BATCH_SIZE, EBOX_PREFETCH apply)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

messages=${1:-2000}
export EBOX_AMQP_URL=${EBOX_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/ebox-bench}
export EBOX_BENCH_SENDER_URL=${EBOX_BENCH_SENDER_URL:-amqp://bench:bench@127.0.0.1:5672/ebox-bench}
export EBOX_DATABASE_URL=${EBOX_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/ebox_bench}
export EBOX_SSIN_HASH_KEY=${EBOX_SSIN_HASH_KEY:-bench-only-secret-never-use-it-in-production}
# Store signs proofs of deposit: the test-only key of tests/fixtures.
export EBOX_PROOF_SIGNING_KEY_FILE=${EBOX_PROOF_SIGNING_KEY_FILE:-tests/fixtures/proof-ed25519.pem}
export EBOX_LOG=${EBOX_LOG:-warn}
export EBOX_LOG_FORMAT=${EBOX_LOG_FORMAT:-text}

cargo build --locked --release -p ebox
ebox="${CARGO_TARGET_DIR:-target}/release/ebox"

admin_url="${EBOX_DATABASE_URL%/*}/postgres"
psql "$admin_url" -qc "DROP DATABASE IF EXISTS ebox_bench WITH (FORCE)"
psql "$admin_url" -qc "CREATE DATABASE ebox_bench"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_root rabbitmqctl -q delete_vhost ebox-bench >/dev/null 2>&1 || true
as_root rabbitmqctl -q add_vhost ebox-bench
as_root rabbitmqctl -q set_permissions -p ebox-bench guest '.*' '.*' '.*'
users=$(as_root rabbitmqctl -q list_users)
grep -q '^bench[[:space:]]' <<<"$users" || as_root rabbitmqctl -q add_user bench bench
as_root rabbitmqctl -q set_permissions -p ebox-bench bench '^$' '^ebox\.publish$' '^ebox\.status\.bench$'

registry=$(mktemp)
trap 'rm -f "$registry"' EXIT
sed 's/^  - id: demo /  - id: bench /' demo/registry.yaml >"$registry"
"$ebox" migrate
"$ebox" registry load "$registry"
"$ebox" bench --messages "$messages"

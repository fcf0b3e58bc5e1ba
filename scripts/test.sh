#!/usr/bin/env bash
# The test command: starts PostgreSQL and RabbitMQ if needed, removes what earlier test runs
# left behind, then checks formatting and lints and runs every test (unit and end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
# joserfc, a JOSE library that is not ours, checks a proof in the end-to-end tests.
if ! python3 -c 'import joserfc' 2>/dev/null; then
  python3 -m pip install --quiet joserfc
fi

# Each end-to-end test makes its own database (ebox_test_*), vhost (ebox-test-*) and broker
# users, some a PostgreSQL login role (ebox_rt_*); a run leaves them for inspection and the next
# run sweeps them.
admin_url=${EBOX_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
api=${EBOX_TEST_RABBITMQ_API:-http://guest:guest@127.0.0.1:15672/api}
for db in $(psql "$admin_url" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'ebox\_test\_%'"); do
  psql "$admin_url" -qc "DROP DATABASE \"$db\" WITH (FORCE)"
done
# Roles belong to the whole cluster, not to the databases just dropped. The group role
# ebox_runtime stays: every database the migrations ran in grants it privileges.
for role in $(psql "$admin_url" -Atc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'ebox\_rt\_%'"); do
  psql "$admin_url" -qc "DROP ROLE \"$role\""
done
for vhost in $(curl -fsS "$api/vhosts?columns=name" | grep -o '"name":"ebox-test-[0-9a-f]*"' | cut -d'"' -f4); do
  curl -fsS -X DELETE "$api/vhosts/$vhost"
done
for user in $(curl -fsS "$api/users?columns=name" | grep -oE '"name":"(onem|stranger|impostor)-[0-9a-f]{12}"' | cut -d'"' -f4); do
  curl -fsS -X DELETE "$api/users/$user"
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints one summary per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit $status

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
for user in $(curl -fsS "$api/users?columns=name" | grep -oE '"name":"(onem|stranger|impostor|forger|ebox-[a-z-]+)-[0-9a-f]{12}"' | cut -d'"' -f4); do
  curl -fsS -X DELETE "$api/users/$user"
done

# Supply chain (deny.toml, docs/operations.md): licences, bans and sources need only the lock
# file; advisories need RustSec's database from GitHub, so they are checked only when it can be
# fetched, and the run says so when it could not.
if ! cargo deny --version >/dev/null 2>&1; then
  # Its own build directory (inside the target directory, so CI's cache keeps it) does not wait
  # on the workspace's build lock. 0.20 reads deny.toml as written.
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cargo-deny" cargo install --locked cargo-deny --version '~0.20'
fi
cargo deny --locked check --hide-inclusion-graph licenses bans sources
advisories_skipped=
fetch_status=0
fetch_log=$(timeout 60 cargo deny --locked fetch db 2>&1) || fetch_status=$?
if [ "$fetch_status" -eq 0 ]; then
  cargo deny --locked check --hide-inclusion-graph advisories
else
  why="no answer within 60 s"
  if [ "$fetch_status" -ne 124 ]; then why=$(printf '%s\n' "$fetch_log" | awk 'NF { last = $0 } END { print last }'); fi
  advisories_skipped="cargo deny: advisories NOT checked: the RustSec advisory database (github.com/rustsec/advisory-db) could not be fetched: $why"
  echo "$advisories_skipped"
fi

scripts/validate-k8s.sh
# The metrics test checks its scrape with promtool too: on a machine without one, validate-k8s.sh
# installed it in its tools folder.
PATH="$PATH:$(cd "${CARGO_TARGET_DIR:-target}/validate-k8s" && pwd)"
export PATH
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
scripts/faults.sh --quick || { faults=$?; [ "$status" -ne 0 ] || status=$faults; } # the fault matrix, short (docs/faults.md); keeps a cargo test failure's status
# The benchmark's smoke run (docs/pipeline.md, "Throughput"): 200 messages through the debug
# build, so that `scripts/bench.sh` keeps working. Its figures mean nothing and are not checked;
# that it finishes and prints them all is.
bench_log=$(mktemp)
bench_err=$(mktemp)
if EBOX_BENCH_PROFILE=debug scripts/bench.sh 200 --replicas 1 --paced-messages 50 --fairness-batch 100 --json >"$bench_log" 2>"$bench_err" \
  && sed -n '/^{/,$p' "$bench_log" | python3 -c 'import json, sys; r = json.load(sys.stdin); assert r["pipelinePerSecond"] > 0 and r["ceilingPerSecond"] > 0 and r["paced"] and r["fairness"], r'; then
  echo "bench: the smoke run printed every figure"
else
  echo "bench: the smoke run failed:"; tail -40 "$bench_err" "$bench_log"
  [ "$status" -ne 0 ] || status=1
fi
rm -f "$bench_log" "$bench_err"
# Repeated here, where the run is summed up, so a skipped check is not lost in the output above.
if [ -n "$advisories_skipped" ]; then echo "$advisories_skipped"; fi
# One closing line for the whole run: cargo prints one summary per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit $status

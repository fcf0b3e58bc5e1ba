#!/usr/bin/env bash
# The run command: starts PostgreSQL and RabbitMQ if needed, builds `ebox`, prepares a demo
# database, broker user, registry and two citizens (one consenting with an e-mail preference, one
# who never consented), starts a development SMTP server, runs the whole pipeline, and lets the
# demo sender publish four messages and print the statuses it hears back.
#
# Pass --keep-running to leave the pipeline running afterwards (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

export EBOX_AMQP_URL=${EBOX_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export EBOX_DATABASE_URL=${EBOX_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/ebox}
export EBOX_SSIN_HASH_KEY=${EBOX_SSIN_HASH_KEY:-demo-only-secret-never-use-it-in-production}
export EBOX_METRICS_ADDR=${EBOX_METRICS_ADDR:-127.0.0.1:9464}
export EBOX_LOG_FORMAT=${EBOX_LOG_FORMAT:-text}
export EBOX_LOG=${EBOX_LOG:-warn}
export EBOX_SMTP_URL=${EBOX_SMTP_URL:-smtp://127.0.0.1:2525}
# The citizen API, trusting the test-only keys of tests/fixtures (never in production).
export EBOX_API_ADDR=${EBOX_API_ADDR:-127.0.0.1:8080}
export EBOX_API_PUBLIC_URL=${EBOX_API_PUBLIC_URL:-http://$EBOX_API_ADDR}
export EBOX_JWT_KEYS_FILE=${EBOX_JWT_KEYS_FILE:-tests/fixtures/jwks.json}
export EBOX_JWT_ISSUER=${EBOX_JWT_ISSUER:-https://idp.ebox.localhost}
export EBOX_JWT_AUDIENCE=${EBOX_JWT_AUDIENCE:-ebox-document-provider}
# Proofs of deposit and of reading, signed with the test-only key of tests/fixtures.
export EBOX_PROOF_SIGNING_KEY_FILE=${EBOX_PROOF_SIGNING_KEY_FILE:-tests/fixtures/proof-ed25519.pem}

cargo build --locked -p ebox
ebox="${CARGO_TARGET_DIR:-target}/debug/ebox"

# The demo database, and the demo sender's broker user with a sender's permissions only:
# publish to ebox.publish, read its own status queue.
admin_url="${EBOX_DATABASE_URL%/*}/postgres"
# (Outputs are captured before grepping: `grep -q` closing a pipe early would fail it under
# pipefail.)
exists=$(psql "$admin_url" -Atc "SELECT 1 FROM pg_database WHERE datname = 'ebox'")
[ "$exists" = 1 ] || psql "$admin_url" -qc "CREATE DATABASE ebox"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
users=$(as_root rabbitmqctl -q list_users)
grep -q '^demo[[:space:]]' <<<"$users" || as_root rabbitmqctl -q add_user demo demo
as_root rabbitmqctl -q set_permissions -p / demo '^$' '^ebox\.publish$' '^ebox\.status\.demo$'
# The broker policies (dead-lettering, the delivery limit, the queues' bounds), before the
# topology is declared. The commands go to the shell as an argument: `rabbitmqctl` reads its
# standard input, and would swallow the commands after its own.
policies=$("$ebox" broker policies --vhost /)
as_root bash -ec "$policies" </dev/null >/dev/null

"$ebox" migrate
"$ebox" registry load demo/registry.yaml

# The consenting citizen gets e-mails in French; the other one never consented.
"$ebox" consent grant 85073003328
"$ebox" citizen set 85073003328 --language fr --channel email --email citoyen@example.be

# A development SMTP server stands in for the mail relay and prints what it receives.
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true' EXIT
if [ "$EBOX_SMTP_URL" = smtp://127.0.0.1:2525 ]; then
  "$ebox" smtp-sink --listen 127.0.0.1:2525 &
  pids+=($!)
fi

"$ebox" run &
pipeline=$!
pids+=($pipeline)
for _ in $(seq 1 100); do
  curl -fsS "http://$EBOX_METRICS_ADDR/readyz" >/dev/null 2>&1 && break
  kill -0 $pipeline 2>/dev/null || { echo "the pipeline stopped; see its log above" >&2; exit 1; }
  sleep 0.2
done

token=$("$ebox" token --key tests/fixtures/es256-private.pem --kid test-es256 --sub 85073003328 --ttl 3600)
proofs=$(mktemp -d)
"$ebox" demo --api-url "http://$EBOX_API_ADDR" --citizen-token "$token" --proofs-dir "$proofs"
sleep 1 # let the notification e-mails reach the SMTP server's output

# The read message's two proofs, checked offline against the keys the API publishes, as a
# sender (or a judge) would: any JOSE library does the same.
curl -fsS "http://$EBOX_API_ADDR/.well-known/jwks.json" >"$proofs/jwks.json"
for proof in proof-of-deposit proof-of-reading; do
  echo "--- $proof: verified with the platform's JWKS"
  "$ebox" proof verify "$proofs/$proof.jws" --jwks "$proofs/jwks.json"
done

# Its journey through the audit trail, then the whole trail checked: the sealer (in the store
# worker) seals records a couple of seconds after they are written.
echo "--- the read message's journey (ebox audit trace $(cat "$proofs/reference"))"
"$ebox" audit trace "$(cat "$proofs/reference")"
sleep 5
echo "--- ebox audit verify"
"$ebox" audit verify
rm -rf "$proofs"

cat <<MSG

The citizen API runs at http://$EBOX_API_ADDR while the pipeline runs (--keep-running).
A demo token of citizen 85073003328, valid for an hour (the API refuses tokens living longer than EBOX_JWT_MAX_LIFETIME_SECONDS):

TOKEN=$token
curl -H "Authorization: Bearer \$TOKEN" http://$EBOX_API_ADDR/ebox/messages
MSG

if [ "${1:-}" = "--keep-running" ]; then
  echo "The pipeline runs (metrics: http://$EBOX_METRICS_ADDR/metrics). Ctrl-C stops it."
  wait $pipeline
fi

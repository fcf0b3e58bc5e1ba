#!/usr/bin/env bash
# The fault matrix (docs/faults.md): runs the pipeline, one `ebox worker` process per stage,
# against this machine's RabbitMQ and PostgreSQL, injects one fault per scenario (failpoint
# aborts at each step boundary of the driver, kill -9, broker stop/start, PostgreSQL
# connections terminated, SIGTERM mid-batch, a duplicate storm, a deleted status queue, SMTP
# down, 16 MiB messages, a 3-node cluster losing its quorum leaders) and checks an oracle:
# every reference has exactly one final status, is stored and notified at most once, nothing is
# missing and nothing stays `accepted`.
# Prints a table; exits 1 when a scenario found a defect, 2 when a fault could not be injected.
# Each scenario uses a vhost (ebox-faults-*) and a database (ebox_faults_*) of its own, removed
# afterwards, and the broker users faults-a and faults-b, removed at the end.
#
#   scripts/faults.sh [--quick] [--messages N] [--big N] [--only SLUG,…] [--keep] [--table FILE]
#
# --quick (the test command's): 200 messages per scenario, one failpoint row per step boundary
# with intake, consent-check and store armed at once instead of one row per worker, no notify
# crash and no cluster, the debug build; about 3.5 minutes. Needs root (rabbitmqctl).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
if ! python3 -c 'import pika' 2>/dev/null; then
  python3 -m pip install --quiet pika
fi
# The full run measures a release build (as scripts/bench.sh does); --quick, for the test
# command, uses the debug build the demo and the tests already made (a release build would take
# longer than the quick run itself). EBOX_FAULTS_PROFILE=release|debug chooses.
profile=${EBOX_FAULTS_PROFILE:-release}
for arg in "$@"; do
  if [ "$arg" = --quick ]; then profile=${EBOX_FAULTS_PROFILE:-debug}; fi
done
if [ "$profile" = release ]; then
  cargo build --locked --release -p ebox
else
  cargo build --locked -p ebox
fi
EBOX_BIN=$(realpath "${CARGO_TARGET_DIR:-target}/$profile/ebox")
export EBOX_BIN
# One run at a time on a machine: a run sweeps the ebox-faults-* vhosts and ebox_faults_*
# databases an interrupted one left, and shares the broker users faults-a and faults-b.
exec 9>/tmp/ebox-faults.lock
flock 9
exec python3 scripts/faults/matrix.py "$@"

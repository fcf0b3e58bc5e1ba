#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ run on this machine: installs them from Debian's packages
# when they are missing, starts them when they are stopped, reuses them when they run.
# Also enables RabbitMQ's management plugin (the tests create a vhost and users per test with it),
# and gives RabbitMQ (port 5671) and PostgreSQL a TLS certificate from a test CA made here once,
# for the TLS tests (see "TLS for the tests" below).
# Needs root (or sudo) only when something must be installed or started.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
log() { printf '[services] %s\n' "$*" >&2; }

# Starts a daemon with no file descriptor of ours but the standard three: a server started
# from a script run under a lock (`flock LOCK scripts/test.sh`) would otherwise hold the lock
# for as long as it runs.
as_daemon() (
  local pid=$BASHPID fd
  for fd in $(ls "/proc/$pid/fd"); do
    if [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ]; then eval "exec $fd>&-"; fi
  done
  as_root "$@"
)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  log "$name did not open port $port in 60 s"; return 1
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then log "PostgreSQL is running"; return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
    fresh=1
  fi
  log "starting PostgreSQL"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_daemon pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for_port 5432 PostgreSQL
  if [ "${fresh:-}" = 1 ]; then
    # A fresh Debian cluster asks for a password over TCP: give `postgres` the one the
    # default URLs use (a machine with trust authentication ignores it).
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
  fi
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "installing RabbitMQ"
    apt_install rabbitmq-server
  fi
  if ! port_open 5672; then
    log "starting RabbitMQ"
    as_daemon rabbitmq-server -detached
    wait_for_port 5672 RabbitMQ
  else
    log "RabbitMQ is running"
  fi
  as_root rabbitmqctl await_startup >/dev/null
  if ! port_open 15672; then
    log "enabling the RabbitMQ management plugin"
    as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
    wait_for_port 15672 "RabbitMQ management"
  fi
}

ensure_tools() {
  local missing=()
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# --- TLS for the tests (never for production) ---------------------------------------------------
# A test CA, made once and reused, signs a server certificate for localhost and 127.0.0.1 and a
# client certificate. RabbitMQ's TLS listener (5671) and PostgreSQL present the server one; the
# end-to-end tests trust the CA. All of it in EBOX_TEST_TLS_DIR (default /var/lib/ebox-test-tls):
# ca.pem, server.pem, client.pem and client.key are readable by everyone (test material); the CA's
# key only by root, each server's key only by its service.
tls_dir=${EBOX_TEST_TLS_DIR:-/var/lib/ebox-test-tls}

# Whether the test certificates are there, signed by the test CA and valid for 30 more days.
test_ca_usable() {
  as_root test -s "$tls_dir/ca.key" && as_root test -s "$tls_dir/server.key" &&
    as_root test -s "$tls_dir/client.key" &&
    openssl verify -CAfile "$tls_dir/ca.pem" "$tls_dir/server.pem" "$tls_dir/client.pem" >/dev/null 2>&1 &&
    openssl x509 -checkend 2592000 -noout -in "$tls_dir/server.pem" >/dev/null &&
    openssl x509 -checkend 2592000 -noout -in "$tls_dir/client.pem" >/dev/null
}

ensure_test_ca() {
  if ! command -v openssl >/dev/null 2>&1; then
    log "installing openssl"
    apt_install openssl
  fi
  if test_ca_usable; then return; fi
  log "making a test CA and certificates in $tls_dir"
  as_root mkdir -p "$tls_dir"
  as_root chmod 755 "$tls_dir"
  as_root bash -euo pipefail -s "$tls_dir" <<'EOF'
cd "$1"
umask 022
cat > openssl.cnf <<'CNF'
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = eBox test CA
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
CNF
for key in ca server client; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key.key.new"
done
chmod 600 ca.key.new server.key.new
chmod 644 client.key.new
openssl req -x509 -new -config openssl.cnf -key ca.key.new -days 3650 -out ca.pem.new
for cert in server client; do
  openssl req -new -key "$cert.key.new" -subj "/CN=ebox-test-$cert" -out "$cert.csr"
  openssl x509 -req -in "$cert.csr" -CA ca.pem.new -CAkey ca.key.new -CAcreateserial -days 825 \
    -extfile openssl.cnf -extensions "$cert" -out "$cert.pem.new" 2>/dev/null
  rm -f "$cert.csr"
done
for file in ca.key ca.pem server.key server.pem client.key client.pem; do mv "$file.new" "$file"; done
EOF
}

# Copies the server key to $2, owned by the service's user $1 and readable by it alone; sets
# key_changed when it did.
install_server_key() {
  local user=$1 target=$2
  key_changed=
  as_root cmp -s "$tls_dir/server.key" "$target" && return
  as_root install -m 0400 -o "$user" -g "$user" "$tls_dir/server.key" "$target"
  key_changed=1
}

restart_rabbitmq() {
  log "restarting RabbitMQ for its TLS listener"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    as_root systemctl restart rabbitmq-server
  else
    as_root rabbitmqctl stop >/dev/null
    for _ in $(seq 1 30); do port_open 5672 || break; sleep 1; done
    as_daemon rabbitmq-server -detached
  fi
  wait_for_port 5672 RabbitMQ
  as_root rabbitmqctl await_startup >/dev/null
}

# Puts `block` (delimited by "# NAME begin" and "# NAME end" lines) in `conf` unless it is
# there already, word for word; succeeds (0) only when it changed the file. Each block is
# compared alone, so several blocks never make each other look changed.
ensure_conf_block() {
  local conf=$1 name=$2 block=$3 current
  current=$({ as_root cat "$conf" 2>/dev/null || true; } | sed -n "/^# $name begin/,/^# $name end/p")
  if [ "$current" = "$block" ]; then
    return 1
  fi
  { { as_root cat "$conf" 2>/dev/null || true; } | sed "/^# $name begin/,/^# $name end/d"
    printf '%s\n' "$block"; } | as_root tee "$conf.ebox-new" >/dev/null
  as_root mv "$conf.ebox-new" "$conf"
}

# RabbitMQ's TLS listener on 5671, added to /etc/rabbitmq/rabbitmq.conf between two marker
# lines (replaced, never repeated). The broker reads its configuration when it starts: it is
# restarted when the block or the key changed, or when 5671 is closed, and only then.
ensure_rabbitmq_tls() {
  local conf=/etc/rabbitmq/rabbitmq.conf restart=
  install_server_key rabbitmq "$tls_dir/rabbitmq.key"
  restart=$key_changed
  local block
  block=$(cat <<EOF
# ebox-test-tls begin: written by scripts/services.sh (tests only)
listeners.ssl.default = 5671
ssl_options.cacertfile = $tls_dir/ca.pem
ssl_options.certfile = $tls_dir/server.pem
ssl_options.keyfile = $tls_dir/rabbitmq.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
# ebox-test-tls end
EOF
  )
  if ensure_conf_block "$conf" ebox-test-tls "$block"; then
    log "configured RabbitMQ's TLS listener (5671)"
    restart=1
  fi
  if ! port_open 5671; then restart=1; fi
  if [ -n "$restart" ]; then
    restart_rabbitmq
    wait_for_port 5671 "RabbitMQ's TLS listener"
  fi
}

# PostgreSQL's TLS with the same server certificate (a conf.d file); a reload applies it.
ensure_postgres_tls() {
  local version reload=
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local conf=/etc/postgresql/$version/main/conf.d/95-ebox-test-tls.conf
  install_server_key postgres "$tls_dir/postgres.key"
  reload=$key_changed
  local wanted
  wanted=$(printf "# written by scripts/services.sh (tests only)\nssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'" \
    "$tls_dir/server.pem" "$tls_dir/postgres.key")
  if [ "$wanted" != "$(as_root cat "$conf" 2>/dev/null || true)" ]; then
    log "configuring PostgreSQL's TLS"
    as_root mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" | as_root tee "$conf" >/dev/null
    reload=1
  fi
  if [ -n "$reload" ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
}

# The largest message RabbitMQ takes: twice EBOX_MAX_MESSAGE_BYTES's default (16 MiB), so
# that intake still answers TOO_LARGE to a body somewhat over the limit, while a body of
# hundreds of MiB is refused by the broker (the publisher's channel is closed) before any worker
# buffers it (docs/operations.md, "Memory"). Kept in rabbitmq.conf for restarts and applied to
# the running broker at once (new channels read it); no restart.
max_message_size=33554432
ensure_rabbitmq_max_message_size() {
  local block
  block=$(printf '# ebox-max-message-size begin: written by scripts/services.sh\nmax_message_size = %s\n# ebox-max-message-size end' "$max_message_size")
  if ensure_conf_block /etc/rabbitmq/rabbitmq.conf ebox-max-message-size "$block"; then
    log "limited RabbitMQ's messages to $max_message_size bytes"
  fi
  as_root rabbitmqctl eval "application:set_env(rabbit, max_message_size, $max_message_size)." >/dev/null
}

ensure_postgres
ensure_rabbitmq
ensure_tools
ensure_test_ca
ensure_rabbitmq_tls
ensure_rabbitmq_max_message_size
ensure_postgres_tls

#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ run on this machine: installs them from Debian's packages
# when they are missing, starts them when they are stopped, reuses them when they run.
# Also enables RabbitMQ's management plugin (the tests create a vhost and users per test with it).
# Needs root (or sudo) only when something must be installed or started.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
log() { printf '[services] %s\n' "$*" >&2; }

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
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
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
    as_root rabbitmq-server -detached
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

ensure_postgres
ensure_rabbitmq
ensure_tools

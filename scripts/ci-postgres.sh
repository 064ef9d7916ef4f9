#!/usr/bin/env bash
# Start a local PostgreSQL for the shared-study test and print its URL (CI, Debian, as root).
# Installs Debian's postgresql package when missing, starts the first cluster (creating one if
# needed), creates the role/database brainseg/brainseg_test, and prints
# postgresql://brainseg:brainseg@localhost:PORT/brainseg_test on stdout (messages on stderr).
set -euo pipefail
log() { echo "ci-postgres: $*" >&2; }
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  log "needs root on Debian/Ubuntu; skipping"; exit 1
fi
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  log "installed postgresql"
fi
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  pg_createcluster "$ver" main >&2
fi
read -r ver name port status _ < <(pg_lsclusters -h | head -1)
[ "$status" = online ] || pg_ctlcluster "$ver" "$name" start >&2
for _ in $(seq 30); do
  su postgres -c "psql -p $port -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -p $port -qtAc \"select 1 from pg_roles where rolname='brainseg'\"" | grep -q 1 ||
  su postgres -c "psql -p $port -qc \"create role brainseg login password 'brainseg'\"" >&2
su postgres -c "psql -p $port -qtAc \"select 1 from pg_database where datname='brainseg_test'\"" |
  grep -q 1 || su postgres -c "createdb -p $port -O brainseg brainseg_test" >&2
log "PostgreSQL $ver on port $port"
echo "postgresql://brainseg:brainseg@localhost:$port/brainseg_test"

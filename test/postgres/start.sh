#!/usr/bin/env bash
# Make a local PostgreSQL ready for the tests that run the stores against it (test/helpers/postgres.ts): start the
# Debian cluster listening on 127.0.0.1 only, and create the role `recite` (password `recite`) that may create the
# throwaway databases the tests use. Installs nothing; safe to run again. Run as root. Prints the URL the tests use
# by default (set RECITE_TEST_POSTGRES to use another server).
set -euo pipefail

version=""
if command -v pg_lsclusters >/dev/null; then
  version=$(pg_lsclusters --no-header 2>/dev/null | awk '$2 == "main" { print $1 }' | sort -V | tail -n 1)
fi
if [ -z "$version" ] && [ -d /usr/lib/postgresql ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
fi
if [ -z "$version" ]; then
  echo "start.sh: no PostgreSQL found (pg_lsclusters, /usr/lib/postgresql); install the Debian package postgresql" >&2
  exit 1
fi

# A package installed without its default cluster (or one dropped by hand) gets one.
if ! pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
  pg_createcluster "$version" main >/dev/null
fi

# Listen on the loopback only, on the port the tests expect: the test role's password is no secret. A file in the
# cluster's conf.d (read after postgresql.conf) keeps the package's own configuration untouched.
conf="/etc/postgresql/$version/main/conf.d/recite-test.conf"
wanted=$'listen_addresses = \'127.0.0.1\'\nport = 5432'
restart=no
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$conf"
  restart=yes
fi

status=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')
if [ "$status" != "online" ]; then
  pg_ctlcluster "$version" main start
elif [ "$restart" = yes ]; then
  pg_ctlcluster "$version" main restart
fi

# The server may take a moment to accept connections after start.
for _ in $(seq 1 50); do
  if runuser -u postgres -- psql -qAt -c 'SELECT 1' >/dev/null 2>&1; then break; fi
  sleep 0.2
done

runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt >/dev/null <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recite') THEN
    CREATE ROLE recite LOGIN CREATEDB PASSWORD 'recite';
  ELSE
    ALTER ROLE recite LOGIN CREATEDB PASSWORD 'recite';
  END IF;
END
$$;
SQL

echo "postgres://recite:recite@127.0.0.1:5432/postgres"

#!/usr/bin/env bash
# One PostgreSQL role per service, owning its own databases only: `mlflow` owns MLFLOW_DB (runs,
# registry) and MLFLOW_AUTH_DB (MLflow's users and permissions), `prefect` owns PREFECT_DB; no
# one else may connect to them, nor to the maintenance database `postgres` (CONNECT revoked from
# PUBLIC). The superuser POSTGRES_USER is used by nothing but this script.
# Runs on the first start of the PostgreSQL volume (docker-entrypoint-initdb.d). Idempotent: run
# it again after changing a role's password in .env:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-databases.sh
set -euo pipefail

own_databases() {  # role, password, database...
  local role=$1 password=$2; shift 2
  local db
  psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres -v role="$role" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L',
              :'role', :'password') \gexec
SQL
  for db in "$@"; do
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres -v role="$role" -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
  done
  echo "postgres-init: role $role owns $*"
}

# nor may the service roles connect to the maintenance database (only the superuser needs it)
psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres -c "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC"
own_databases "$MLFLOW_DB_USER" "$MLFLOW_DB_PASSWORD" "$MLFLOW_DB" "$MLFLOW_AUTH_DB"
own_databases "$PREFECT_DB_USER" "$PREFECT_DB_PASSWORD" "$PREFECT_DB"

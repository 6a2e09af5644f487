#!/usr/bin/env bash
# Creates the two databases (MLflow, Prefect) on first start of the PostgreSQL volume.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE DATABASE ${MLFLOW_DB};
CREATE DATABASE ${PREFECT_DB};
SQL

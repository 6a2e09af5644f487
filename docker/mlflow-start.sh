#!/bin/sh
# Entry point of the mlflow service: sets the backend store (PostgreSQL database MLFLOW_DB as
# role MLFLOW_DB_USER; in the environment, not on the command line) and writes the basic-auth
# app's configuration (users and permissions in database MLFLOW_AUTH_DB; every login may read,
# nothing more by default) into a private file on the /tmp tmpfs, then runs the command
# (`mlflow server --app-name basic-auth ...`). The admin is created on the first start from
# MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (MLflow's own bootstrap); the other
# users come from the mlflow-init service (docker/mlflow_init.py).
set -eu
umask 077
config=/tmp/mlflow-auth/basic_auth.ini
mkdir -p "$(dirname "$config")"
cat > "$config" <<EOF
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://${MLFLOW_DB_USER}:${MLFLOW_DB_PASSWORD}@postgres:5432/${MLFLOW_AUTH_DB}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# A password check (PBKDF2) took 0.4-0.7 s of server CPU per request on a busy 2-core machine,
# and a training run makes hundreds of requests: remember a good login for 60 s (per worker; an
# old password may go on working for up to 60 s after it is changed)
auth_cache_ttl_seconds = 60
EOF
export MLFLOW_AUTH_CONFIG_PATH="$config"
export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://${MLFLOW_DB_USER}:${MLFLOW_DB_PASSWORD}@postgres:5432/${MLFLOW_DB}"
exec "$@"

# The official MLflow image lacks psycopg2 (PostgreSQL stores) and Flask-WTF (the basic-auth
# app's CSRF protection, MLflow's `auth` extra); add both. Runs as an unprivileged user (the
# official image runs as root).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg2-binary>=2.9,<3" "Flask-WTF>=1.2,<2" \
    && useradd --create-home --uid 1000 mlflow \
    && mkdir -p /mlartifacts && chown mlflow:mlflow /mlartifacts
USER mlflow

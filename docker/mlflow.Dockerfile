# The official MLflow image lacks psycopg2; add it for the PostgreSQL backend store.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg2-binary>=2.9,<3"

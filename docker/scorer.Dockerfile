# The scorer image: batch scoring, inbox scoring (`sign-mlops serve --only scoring`) and the Dask
# workers of the `scale` profile. The scoring-only install plus Prefect/Dask -- no TensorFlow,
# Keras, tf2onnx or MLflow (models:/ URIs are resolved over MLflow's REST API).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 SIGN_MLOPS_HOME=/srv/sign-mlops
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sign_model ./sign_model
COPY flows ./flows
COPY serving ./serving
RUN pip install ".[orchestrate]"
# Mount points exist in the image, owned by the user the process runs as (see Dockerfile).
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /srv/sign-mlops/data /srv/sign-mlops/inbox /srv/sign-mlops/outbox /srv/sign-mlops/outputs \
    && chown -R app:app /srv/sign-mlops
USER app
WORKDIR /srv/sign-mlops
CMD ["sign-mlops", "serve", "--only", "scoring"]

# The training image: the whole pipeline (TensorFlow, MLflow, Prefect). Runs `sign-mlops serve --only training`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SIGN_MLOPS_HOME=/srv/sign-mlops TF_CPP_MIN_LOG_LEVEL=3
WORKDIR /app
COPY pyproject.toml README.md ./
# Dependencies first, in their own layer (an empty package stands in for the code), so a change
# to the code rebuilds in seconds instead of reinstalling every dependency.
RUN mkdir sign_mlops && touch sign_mlops/__init__.py \
    && pip install ".[train,server]" && pip uninstall -y sign-mlops && rm -rf build *.egg-info sign_mlops
COPY . .
# The code (the allowlist in .dockerignore), then every mount point, owned by the user the
# process runs as: a fresh named volume mounted there copies that ownership (a missing mount
# point comes up root:root 755). One layer: with the vfs storage driver each layer is a full copy.
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 app \
    && mkdir -p /srv/sign-mlops/data /srv/sign-mlops/inbox /srv/sign-mlops/outbox /srv/sign-mlops/outputs \
    && chown -R app:app /srv/sign-mlops
USER app
WORKDIR /srv/sign-mlops
CMD ["sign-mlops", "serve", "--only", "training"]

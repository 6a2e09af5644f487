#!/usr/bin/env bash
# Writes a .env for the stack from .env.example with a fresh random value for every secret
# (48 hex characters each, from /dev/urandom), readable by its owner only.
#   scripts/make-env.sh                      writes ./.env (refuses to overwrite one)
#   scripts/make-env.sh --out FILE --force   another file; overwrite it
#   scripts/make-env.sh KEY=VALUE ...        also set other settings (e.g. MLFLOW_PORT=5001)
# The passwords to hand out afterwards: MLFLOW_VIEWER_* (read-only MLflow login for the team),
# PREFECT_AUTH_USER:PREFECT_AUTH_PASSWORD (the Prefect login). See docs/compose.md, "Access".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/.env
force=0
settings=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --force) force=1; shift ;;
    *=*) settings+=("$1"); shift ;;
    *) echo "usage: $0 [--out FILE] [--force] [KEY=VALUE ...]" >&2; exit 2 ;;
  esac
done
if [ -e "$out" ] && [ $force != 1 ]; then
  echo "make-env: $out exists; keep it, or pass --force to replace every secret in it (running stacks then need: docker compose up -d)" >&2
  exit 1
fi

random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
chmod 600 "$tmp"
cp "$root/.env.example" "$tmp"
for name in POSTGRES_PASSWORD MLFLOW_DB_PASSWORD PREFECT_DB_PASSWORD MLFLOW_ADMIN_PASSWORD \
            MLFLOW_VIEWER_PASSWORD MLFLOW_SERVICE_PASSWORD MLFLOW_SECRET_KEY PREFECT_AUTH_PASSWORD; do
  settings=("$name=$(random_secret)" "${settings[@]}")
done
for setting in "${settings[@]}"; do
  key=${setting%%=*}
  value=${setting#*=}
  if grep -q "^$key=" "$tmp"; then
    # | cannot occur in a hex secret; other values with | are refused rather than mangled
    case "$value" in *'|'*) echo "make-env: $key: '|' is not allowed in values" >&2; exit 2 ;; esac
    sed -i "s|^$key=.*|$key=$value|" "$tmp"
  else
    printf '%s=%s\n' "$key" "$value" >> "$tmp"
  fi
done
bash "$root/scripts/check-env.sh" "$tmp" >/dev/null
mv "$tmp" "$out"
trap - EXIT
echo "make-env: wrote $out (mode 600) with random secrets; start the stack with: docker compose up -d"

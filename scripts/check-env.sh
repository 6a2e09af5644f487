#!/usr/bin/env bash
# Refuses empty or placeholder secrets for the stack, in one line naming every bad variable.
#   scripts/check-env.sh .env     check a file (scripts/make-env.sh and scripts/stack-check.sh do)
#   scripts/check-env.sh          check this process's environment (the stack's `secrets-check`
#                                 service runs it first; every other service waits for it)
# A secret must be at least 16 characters of A-Z a-z 0-9 . _ ~ - (it goes into database URLs
# unescaped) and must not look like a placeholder (change-me, changeme, example, password...).
# scripts/make-env.sh writes a .env whose secrets are 48 random hex characters.
set -euo pipefail

SECRETS=(POSTGRES_PASSWORD MLFLOW_DB_PASSWORD PREFECT_DB_PASSWORD MLFLOW_ADMIN_PASSWORD
         MLFLOW_VIEWER_PASSWORD MLFLOW_SERVICE_PASSWORD MLFLOW_SECRET_KEY PREFECT_AUTH_PASSWORD)

value_of() {  # name -> its value, from the file when one was given, else from the environment
  if [ -n "$file" ]; then
    sed -n "s/^$1=//p" "$file" | tail -1
  else
    printenv "$1" || true
  fi
}

file=${1:-}
if [ -n "$file" ] && [ ! -r "$file" ]; then
  echo "check-env: $file not found; create it with scripts/make-env.sh" >&2
  exit 1
fi
bad=()
for name in "${SECRETS[@]}"; do
  value=$(value_of "$name")
  lowered=$(printf '%s' "$value" | tr '[:upper:]' '[:lower:]')
  if [ -z "$value" ]; then
    bad+=("$name is empty")
  elif [[ $lowered =~ change|example|placeholder|secret|password|admin|xxx ]]; then
    bad+=("$name is a placeholder")
  elif [ ${#value} -lt 16 ]; then
    bad+=("$name is shorter than 16 characters")
  elif [[ ! $value =~ ^[A-Za-z0-9._~-]+$ ]]; then
    bad+=("$name has characters outside A-Z a-z 0-9 . _ ~ -")
  fi
done
if [ ${#bad[@]} -gt 0 ]; then
  where=${file:-the environment}
  joined=$(printf '%s; ' "${bad[@]}")
  echo "stack refused: ${joined%; } (in $where); run scripts/make-env.sh for a .env with random secrets" >&2
  exit 1
fi
echo "check-env: ${#SECRETS[@]} secrets set${file:+ in $file}"

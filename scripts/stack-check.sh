#!/usr/bin/env bash
# End-to-end check of the production stack, for real:
#   1. a .env with random secrets (scripts/make-env.sh), compose up -d --build, wait until every
#      service is healthy;
#   2. one training run (smoke preset) through the Prefect deployment of `sign-mlops serve`;
#   3. via the MLflow API: the run, the registered models (INT8 when the champion links one) and the `champion` alias exist,
#      and the ONNX champion downloads through the server (scored with models:/...@champion);
#   4. a labelled CSV dropped into the inbox volume, inbox scoring triggered through its
#      deployment (the light scorer image), rows in = scored + rejected in the outbox summary;
#   5. profile `scale` with 2 Dask workers: a larger file scored through the served Dask path,
#      outputs byte-identical to the single-machine scorer's; then a 2-trial smoke sweep on the
#      training workers (dask-train-scheduler): one parent and two finished child runs in MLflow;
#   6. logins: anonymous and wrong-password requests refused by MLflow and Prefect, the read-only
#      viewer reads but cannot move the champion (HTTP 403); every API call above uses a login;
#   7. down -v (unless KEEP=1, which keeps the stack and its .env and prints where it is).
# Usage: scripts/stack-check.sh [-f override.yml ...]
#   COMPOSE="docker compose" | "docker-compose" (default: whichever is installed; both work)
#   STACK_PROJECT (default sign-mlops-check), WAIT_S (default 900), KEEP=1 keeps the stack up.
# On machines where containers may only use loopback: -f tests/stack/host-network.yml
set -euo pipefail
cd "$(dirname "$0")/.."

overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    -f) overrides+=(-f "$2"); shift 2 ;;
    *) echo "usage: $0 [-f override.yml ...]" >&2; exit 2 ;;
  esac
done
project=${STACK_PROJECT:-sign-mlops-check}
wait_s=${WAIT_S:-900}
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"
  elif command -v docker-compose >/dev/null; then COMPOSE=docker-compose
  else echo "stack-check: no compose client; install Docker Compose v2 or docker-compose >= 1.29" >&2; exit 2; fi
fi
work=$(mktemp -d)
env_file=$work/.env
bash scripts/make-env.sh --out "$env_file" "COMPOSE_PROJECT_NAME=$project" >/dev/null
bash scripts/check-env.sh "$env_file"
setting() { sed -n "s/^$1=//p" "$env_file" | tail -1; }
service_login="$(setting MLFLOW_SERVICE_USER):$(setting MLFLOW_SERVICE_PASSWORD)"
viewer_login="$(setting MLFLOW_VIEWER_USER):$(setting MLFLOW_VIEWER_PASSWORD)"
prefect_login="$(setting PREFECT_AUTH_USER):$(setting PREFECT_AUTH_PASSWORD)"
profile=()
compose_file=docker-compose.yml
if [ ${#overrides[@]} -gt 0 ] && grep -qs "network_mode: host" "${overrides[@]/#-f/}"; then
  # Host networking discards published ports; Compose v1 refuses them outright and an override
  # cannot delete them, so use a copy of the file without `ports:` (same project directory).
  compose_file=$work/docker-compose.yml
  awk '/^    ports:/{skip=1; next} skip && /^      - /{next} {skip=0; print}' docker-compose.yml > "$compose_file"
fi

say() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
fail() { printf '\nSTACK CHECK FAILED: %s\n' "$*" >&2; exit 1; }
dc() { $COMPOSE --env-file "$env_file" -p "$project" --project-directory . -f "$compose_file" "${overrides[@]}" "${profile[@]}" "$@"; }
in_service() { dc exec -T "$1" sh -c "$2"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
mlflow_api() { curl -sf --max-time 30 -u "$service_login" "http://127.0.0.1:5000/api/2.0/mlflow/$1"; }
http_status() {  # login ('' for none), method, url, [json body] -> the HTTP status code
  local login=$1 method=$2 url=$3 body=${4:-}
  curl -s -o /dev/null -w '%{http_code}' --max-time 30 ${login:+-u "$login"} -X "$method" \
    -H 'Content-Type: application/json' ${body:+-d "$body"} "$url"
}
expect_status() {  # expected, what, login, method, url, [body]
  local expected=$1 what=$2; shift 2
  local got
  got=$(http_status "$@")
  [ "$got" = "$expected" ] || fail "$what: expected HTTP $expected, got $got"
  echo "  $what: HTTP $got"
}

teardown() {
  local code=$?
  if [ "${KEEP:-0}" != 1 ]; then
    say "teardown: down -v"
    profile=(--profile scale)
    dc down -v --remove-orphans >/dev/null 2>&1 || echo "teardown failed; run: $COMPOSE -p $project down -v" >&2
    rm -rf "$work"
  else
    echo "KEEP=1: the stack is up; its settings and logins are in $env_file (MLflow viewer: $viewer_login)"
  fi
  [ $code -eq 0 ] && printf '\nSTACK CHECK PASSED in %ss\n' "$SECONDS"
  exit $code
}
trap teardown EXIT

wait_healthy() {  # service...
  local deadline=$((SECONDS + wait_s)) svc id status
  for svc in "$@"; do
    while :; do
      status=missing
      for id in $(dc ps -q "$svc" 2>/dev/null); do
        status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
        [ "$status" = healthy ] || break
      done
      [ "$status" = healthy ] && break
      if [ $SECONDS -gt $deadline ]; then
        dc logs --tail 40 "$svc" >&2 || true
        fail "$svc is not healthy after ${wait_s}s (status: $status); its last log lines are above"
      fi
      sleep 5
    done
    echo "  $svc healthy"
  done
}

run_deployment() {  # service, deployment, params...
  local service=$1 name=$2; shift 2
  local params=""
  for p in "$@"; do params="$params -p '$p'"; done  # single-quoted: JSON values keep their quotes
  in_service "$service" "prefect deployment run '$name' $params --watch --watch-timeout $wait_s" \
    || fail "deployment $name did not complete; see: $COMPOSE -p $project logs $service"
}

say "preflight: $COMPOSE, ports"
$COMPOSE version | sed -n 1p  # sed reads to the end: head would SIGPIPE compose under pipefail
for port in 5432 5000 4200 8786 8787 8788 8789; do
  if [ -n "$(ss -ltnH "sport = :$port")" ]; then fail "port $port is in use on this host (stop what holds it: ss -ltnp)"; fi
done

say "build and start the stack"
build_start=$SECONDS
dc up -d --build || {
  dc logs --tail 5 secrets-check mlflow-init >&2 || true
  fail "compose up failed; the lines above say why when a secret or the MLflow users were refused"
}
echo "  up --build took $((SECONDS - build_start)) s"
wait_healthy postgres mlflow prefect trainer scorer
healthy_at=$SECONDS

say "train once through the Prefect deployment (smoke preset)"
run_deployment trainer sign-mnist-training/scheduled-retraining preset=smoke force=true 'policy={"accuracy_floor": 0.5}'

say "check the run, the registered models and the champion via the MLflow API"
experiment=$(mlflow_api "experiments/get-by-name?experiment_name=sign-language-mnist" | json 'd["experiment"]["experiment_id"]')
runs=$(curl -sf -u "$service_login" -X POST -H 'Content-Type: application/json' -d "{\"experiment_ids\": [\"$experiment\"]}" \
  http://127.0.0.1:5000/api/2.0/mlflow/runs/search | json 'len(d.get("runs", []))')
[ "$runs" -ge 1 ] || fail "no MLflow run in experiment $experiment"
for model in sign-mnist-keras sign-mnist-onnx; do
  mlflow_api "registered-models/get?name=$model" >/dev/null || fail "registered model $model missing"
done
champion_json=$(mlflow_api "registered-models/alias?name=sign-mnist-onnx&alias=champion")
champion=$(echo "$champion_json" | json 'd["model_version"]["version"]')
# INT8 is registered only when it pays (faster on the scorer, within bounds): check it when linked
int8=$(echo "$champion_json" | json 'next((t["value"] for t in d["model_version"].get("tags", []) if t["key"] == "int8_version"), "")')
if [ -n "$int8" ]; then
  mlflow_api "model-versions/get?name=sign-mnist-onnx-int8&version=$int8" >/dev/null \
    || fail "champion links sign-mnist-onnx-int8 v$int8, which is missing"
fi
echo "  $runs run(s), champion = sign-mnist-onnx v$champion, INT8 ${int8:+v$int8}${int8:-not registered (did not pay)}"

say "logins: who may do what"
mlflow=http://127.0.0.1:5000/api/2.0/mlflow
search="{\"experiment_ids\": [\"$experiment\"]}"
move="{\"name\": \"sign-mnist-onnx\", \"alias\": \"champion\", \"version\": \"$champion\"}"
expect_status 401 "MLflow, anonymous search of runs" "" POST "$mlflow/runs/search" "$search"
expect_status 401 "MLflow, wrong password" "${viewer_login%%:*}:wrong-password" POST "$mlflow/runs/search" "$search"
expect_status 200 "MLflow, viewer searches runs" "$viewer_login" POST "$mlflow/runs/search" "$search"
expect_status 401 "MLflow, anonymous moves the champion" "" POST "$mlflow/registered-models/alias" "$move"
expect_status 403 "MLflow, viewer moves the champion" "$viewer_login" POST "$mlflow/registered-models/alias" "$move"
expect_status 200 "MLflow, service account moves the champion (onto the same version)" "$service_login" POST \
  "$mlflow/registered-models/alias" "$move"
expect_status 401 "Prefect, anonymous reads flow runs" "" POST http://127.0.0.1:4200/api/flow_runs/filter '{}'
expect_status 401 "Prefect, wrong auth string" "${prefect_login%%:*}:wrong" POST http://127.0.0.1:4200/api/flow_runs/filter '{}'
expect_status 200 "Prefect, with the auth string" "$prefect_login" POST http://127.0.0.1:4200/api/flow_runs/filter '{}'

say "inbox: a labelled CSV through the inbox deployment"
in_service scorer 'set -e; sign-mlops data synth --out /tmp/synth --train-rows 48 --test-rows 600 --seed 5 >/dev/null
  cp /tmp/synth/sign_mnist_test.csv "$SIGN_MLOPS_INBOX/batch.csv.partial"
  mv "$SIGN_MLOPS_INBOX/batch.csv.partial" "$SIGN_MLOPS_INBOX/batch.csv"'
run_deployment scorer sign-mnist-inbox-scoring/inbox-scoring settle_s=0
in_service scorer 'cat "$SIGN_MLOPS_OUTBOX"/batch-*/batch.summary.json' > "$work/batch.json" || fail "no outbox summary for batch.csv"
python3 - "$work/batch.json" <<'EOF' || fail "outbox summary does not balance"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["rows_in"] == 600 == s["rows_scored"] + s["rows_rejected"], s
assert s["model"]["name"] == "sign-mnist-onnx" and s["model"]["version"], s["model"]
print(f"  rows in {s['rows_in']} = {s['rows_scored']} scored + {s['rows_rejected']} rejected; accuracy {s['accuracy']}")
EOF

say "the ONNX champion downloads through the server and scores"
in_service scorer 'rm -rf "$SIGN_MLOPS_HOME/outputs/model-cache" && env SIGN_MLOPS_DASK_ADDRESS= sign-mlops score /tmp/synth/sign_mnist_train.csv --out /tmp/champion-check >/dev/null && test -s /tmp/champion-check/sign_mnist_train.summary.json' \
  || fail "scoring with models:/sign-mnist-onnx@champion through the server failed"
echo "  models:/sign-mnist-onnx@champion downloaded (sha256 checked) and scored"

say "scale profile: 2 Dask workers, inbox scoring on the cluster"
sed -i "s|^SIGN_MLOPS_DASK_ADDRESS=.*|SIGN_MLOPS_DASK_ADDRESS=tcp://dask-scheduler:8786|" "$env_file"
# one training worker is enough to prove the sweep path: with Docker's vfs driver each container
# of the 3.5 GB training image is a full copy, and two of them filled a 50 GB disk here
sed -i "s|^DASK_TRAIN_WORKERS=.*|DASK_TRAIN_WORKERS=${STACK_TRAIN_WORKERS:-1}|" "$env_file"
profile=(--profile scale)
dc up -d --scale dask-worker=2
wait_healthy dask-scheduler dask-worker scorer
in_service scorer 'set -e; sign-mlops data synth --out /tmp/big --train-rows 48 --test-rows 30000 --seed 9 >/dev/null
  cp /tmp/big/sign_mnist_test.csv "$SIGN_MLOPS_INBOX/big.csv.partial" && mv "$SIGN_MLOPS_INBOX/big.csv.partial" "$SIGN_MLOPS_INBOX/big.csv"'
run_deployment scorer sign-mnist-inbox-scoring/inbox-scoring settle_s=0
in_service scorer 'set -e; out=$(ls -d "$SIGN_MLOPS_OUTBOX"/big-*); cat "$out/big.summary.json"' > "$work/big.json" \
  || fail "no outbox summary for big.csv (cluster path)"
python3 - "$work/big.json" <<'EOF' || fail "the cluster summary is wrong"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["rows_in"] == 30000 == s["rows_scored"] + s["rows_rejected"], s
assert s.get("pieces", 0) >= 2, f"expected the file in several pieces, got {s.get('pieces')}"
print(f"  {s['rows_in']} rows in {s['pieces']} pieces on {s['workers']} worker process(es), {s['rows_per_second']} rows/s")
EOF
in_service scorer 'set -e; out=$(ls -d "$SIGN_MLOPS_OUTBOX"/big-*)
  env SIGN_MLOPS_DASK_ADDRESS= sign-mlops score "$SIGN_MLOPS_INBOX/processed/big.csv" --out /tmp/single >/dev/null
  cmp "$out/big.predictions.csv" /tmp/single/big.predictions.csv && cmp "$out/big.rejects.csv" /tmp/single/big.rejects.csv' \
  || fail "cluster outputs differ from the single-machine scorer's"
echo "  cluster predictions and rejects are byte-identical to the single-machine scorer's"

say "sweep: 2 smoke trials on the training workers (dask-train-scheduler), compared in MLflow"
wait_healthy dask-train-scheduler dask-train-worker
in_service trainer 'set -e; printf "name: stack-check\nmethod: grid\npresets: [smoke]\nseeds: [0, 1]\nfixed: {epochs: 1}\n" > /tmp/sweep.yaml
  sign-mlops sweep /tmp/sweep.yaml --dask-address tcp://dask-train-scheduler:8788 > /tmp/sweep.out 2>&1 || { tail -30 /tmp/sweep.out; exit 1; }' \
  || fail "the sweep on the training workers failed (its output is above)"
sweeps=$(mlflow_api "experiments/get-by-name?experiment_name=sign-language-mnist-sweeps" | json 'd["experiment"]["experiment_id"]') \
  || fail "no sweep experiment in MLflow"
curl -sf -u "$service_login" -X POST -H 'Content-Type: application/json' -d "{\"experiment_ids\": [\"$sweeps\"]}" \
  http://127.0.0.1:5000/api/2.0/mlflow/runs/search > "$work/sweep-runs.json" || fail "cannot search the sweep's runs"
python3 - "$work/sweep-runs.json" <<'EOF' || fail "the sweep's runs are wrong"
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
tags = lambda r: {t["key"]: t["value"] for t in r["data"].get("tags", [])}
parents = [r for r in runs if tags(r).get("sweep") == "parent"]
assert len(parents) == 1, f"expected one parent run, got {len(parents)}"
parent = parents[0]["info"]["run_id"]
children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent]
assert len(children) == 2 and all(c["info"]["status"] == "FINISHED" for c in children), children
assert all(any(m["key"] == "sweep/val_accuracy" for m in c["data"]["metrics"]) for c in children)
assert parents[0]["info"]["status"] == "FINISHED" and tags(parents[0]).get("sweep_best_run")
print(f"  parent {parent}: 2 child runs FINISHED on the training workers, best {tags(parents[0])['sweep_best_run']}")
EOF

say "images and memory"
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'sign-mlops|postgres|mlflow|prefect|python' || true
echo "  build + first start took $((healthy_at - build_start)) s"
docker stats --no-stream --format '{{.Name}}  {{.MemUsage}}  {{.CPUPerc}}' $(dc ps -q) || true

#!/usr/bin/env bash
# Two local Prefect workers on one process work pool run the tiny profile's DAG up to infer@none
# with infer in two shards, twice: the first run computes, the second is all cache hits. Prints
# each run's task timeline (start/end seconds, host:pid of the worker's flow-run process) and
# wall time. Usage: bash benchmarks/flow_two_workers.sh [WORKDIR]   (default /tmp/paha-pool)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/paha-pool}"
export PATH="$ROOT/.venv/bin:$PATH" PREFECT_HOME="$WORK/prefect-home"
export PREFECT_API_URL=http://127.0.0.1:4200/api PREFECT_SERVER_ANALYTICS_ENABLED=false
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$ROOT" && python -c "import sys; from pathlib import Path; from tests.tiny_repo import \
make_tiny_repo; make_tiny_repo(Path(sys.argv[1]), {'infer': {'max_clips': None}})" "$WORK/repo"
cd "$WORK/repo"
prefect server start --host 127.0.0.1 --port 4200 > "$WORK/server.log" 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for _ in $(seq 90); do curl -sf http://127.0.0.1:4200/api/health > /dev/null && break; sleep 1; done
prefect work-pool create paha --type process > /dev/null
prefect worker start --pool paha --name w1 > "$WORK/w1.log" 2>&1 &
prefect worker start --pool paha --name w2 > "$WORK/w2.log" 2>&1 &
python -c "from pipeline.orchestration.flows import paha_command; paha_command.from_source('.', \
'pipeline/orchestration/flows.py:paha_command').deploy('paha-command', work_pool_name='paha', \
ignore_warnings=True)" > /dev/null
TIMEFORMAT="wall %R s"
for run in first second; do
  echo "== $run run"
  time paha flow infer@none --shards 2 --gpu-slots 2 --pool-deployment paha-command/paha-command \
    2> /dev/null
done
for w in w1 w2; do
  echo "== flow runs taken by worker $w"
  grep -o "Flow run '[^']*' - Beginning" "$WORK/$w.log" | cut -d"'" -f2 | sort | uniq -c
done
dvc status --with-deps infer@none

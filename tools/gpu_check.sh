#!/usr/bin/env bash
# The GPU check of docs/speed.md: on a machine with CUDA, train the default grid's synthetic_lesions cells
# with 10 seeds per cell (one job per (dataset, model, method, ε) cell, execution.epsilons_per_job: 1) and run `make bench`, then write
# the figures to one file. Sized for under 8 minutes on one H100-class GPU (training is cut off at 5.5, the step benchmarks at 1.5).
#
#   bash tools/gpu_check.sh [OUT_FILE]        # default: gpu_check.txt
#
# Nothing is downloaded: it uses the repository's .venv when there is one, else the python on PATH.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-gpu_check.txt}")
PY="$REPO/.venv/bin/python"; [ -x "$PY" ] || PY=$(command -v python3)
export OMP_WAIT_POLICY=PASSIVE PYTHONPATH="$REPO/workflow${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device here (torch.cuda.is_available() is False); run tools/gpu_check.sh on a GPU machine" >&2
  exit 1
fi
WORK=$(mktemp -d)
"$PY" - "$REPO" "$WORK" <<'PY'
import sys, yaml
repo, work = sys.argv[1:]
config = yaml.safe_load(open(f"{repo}/benchmarks/default.yaml"))
config["datasets"] = {"synthetic_lesions": config["datasets"]["synthetic_lesions"]}
# one job per (ε, cell) with all its seeds, so the four ε cells train side by side on the card (one job for every ε
# would run them one after another)
config.update(seeds=list(range(10)), device="cuda", datasets_dir=f"{repo}/datasets",
              execution={"seeds_per_job": "all", "epsilons_per_job": 1})
config["audit"]["attacks"] = []
yaml.safe_dump(config, open(f"{work}/benchmark.yaml", "w"))
PY
CORES=$(nproc)
{
  echo "# tools/gpu_check.sh, $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, opacus; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'opacus', opacus.__version__)"
  echo "cores: $CORES"
} > "$OUT"
start=$(date +%s)
# every run.json of the grid: training and scoring, no evaluation, audit or report
TARGETS=$("$PY" -c "
import sys, yaml; from dpfair.pipeline.benchmark import validate_config
b = validate_config(yaml.safe_load(open('$WORK/benchmark.yaml')))
print(' '.join(f'results/runs/{r.path}/run.json' for r in b.runs()))")
status=0
# targets first: --configfile, --resources and --quiet take several values and would swallow them
timeout 330 "$PY" -m snakemake $TARGETS -s "$REPO/Snakefile" -d "$WORK" --configfile "$WORK/benchmark.yaml" \
  --cores "$CORES" --resources gpu=8 gpu_mem_mb=120000 > "$WORK/snakemake.log" 2>&1 || status=$?
wall=$(( $(date +%s) - start ))
"$PY" - "$WORK" "$wall" "$status" >> "$OUT" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
work, wall, status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
records = [json.loads(p.read_text()) for p in (work / "results/runs").rglob("run.json")]
jobs = [float(pd.read_csv(p, sep="\t")["s"].mean()) for p in (work / "results/benchmarks/train").rglob("*.tsv")]
loops = sum(r["train_seconds"] for r in records)
print(f"training: {len(records)} runs in {len(jobs)} train jobs, wall {wall} s (snakemake exit {status}; 124: cut off at 330 s)")
print(f"train job-seconds {sum(jobs):.0f}, training loops {loops:.0f} s, outside the loops {1 - loops / max(sum(jobs), 1e-9):.1%}")
print(f"devices: {sorted({r['device'] for r in records})}")
PY
echo "## make bench (results/speed.csv)" >> "$OUT"
(cd "$WORK" && timeout 60 "$PY" -m snakemake results/speed.csv -s "$REPO/Snakefile" -d "$WORK" \
  --configfile "$WORK/benchmark.yaml" --cores "$CORES" --forcerun speed > "$WORK/bench.log" 2>&1) && cat "$WORK/results/speed.csv" >> "$OUT" \
  || echo "make bench failed or ran past 60 s: $WORK/bench.log" >> "$OUT"
echo "## many models per step (tools/bench_batched.py on cuda)" >> "$OUT"
timeout 30 "$PY" "$REPO/tools/bench_batched.py" --device cuda --steps 10 >> "$OUT" 2>&1 || echo "bench_batched failed or ran past 30 s" >> "$OUT"
cat "$OUT"

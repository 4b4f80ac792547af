#!/usr/bin/env bash
# The GPU check of chapter 6, in one go (about 10 minutes or less on a recent GPU):
#   bash benchmarks/gpu_check.sh [OUTDIR]
# It prints, and writes as JSON under OUTDIR:
#   * throughput of every phase for the `cpu` configuration on 2 CPU threads and on the GPU
#     (the GPU-vs-CPU ratio) and for the `gpu` configuration on the GPU, KV cache on and off;
#   * the whole pipeline at the `gpu` scale on the GPU, from scratch: time per stage, peak GPU
#     memory, precision, and the gold-judge results;
#   * the whole pipeline at the `cpu` scale on the GPU, from scratch, against the 2-core CPU
#     run kept in benchmarks/results/.
# DEVICE=cpu SMALL=ci BIG=ci FRESH= runs the same steps on a CPU in a minute or two (the test
# suite does this to keep the script working on machines without a GPU).
set -euo pipefail
OUT=${1:-gpu_check_out}
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-cpu}
BIG=${BIG:-gpu}
mkdir -p "$OUT"
export TQDM_DISABLE=1 RLHF_NONINTERACTIVE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
export RLHF_CACHE="${RLHF_CACHE:-$OUT/cache}"
FRESH=${FRESH---fresh}   # FRESH= reuses cached stages (the test suite does; the check itself starts from scratch)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

"$PY" -c "import rlhf_minimal" 2>/dev/null || "$PY" -m pip install --quiet --no-deps -e "$HERE/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
start=$(date +%s)
echo "== throughput: the $SMALL configuration on 2 CPU threads"
"$PY" -m rlhf_minimal bench --scale "$SMALL" --device cpu --threads 2 --repeats 2 --out "$OUT/bench_${SMALL}_on_cpu2.json"
echo "== throughput: the $SMALL configuration on $DEVICE"
"$PY" -m rlhf_minimal bench --scale "$SMALL" --device "$DEVICE" --out "$OUT/bench_${SMALL}_on_${DEVICE}.json"
echo "== throughput: the $BIG configuration on $DEVICE"
"$PY" -m rlhf_minimal bench --scale "$BIG" --device "$DEVICE" --out "$OUT/bench_${BIG}_on_${DEVICE}.json"
echo "== the whole pipeline at the $BIG scale on $DEVICE, from scratch"
"$PY" -m rlhf_minimal run --scale "$BIG" --device "$DEVICE" $FRESH --out "$OUT/run_${BIG}_on_${DEVICE}.json"
echo "== the whole pipeline at the $SMALL scale on $DEVICE, from scratch"
"$PY" -m rlhf_minimal run --scale "$SMALL" --device "$DEVICE" $FRESH --out "$OUT/run_${SMALL}_on_${DEVICE}.json"
echo "== summary ($(( $(date +%s) - start )) s in all)"
"$PY" "$HERE/summarize.py" "$OUT" --small "$SMALL" --big "$BIG" --device "$DEVICE" \
  --reference "$HERE/results/run_${SMALL}_on_cpu2.json"

#!/usr/bin/env bash
# The GPU check of chapter 6, in one go (under 10 minutes on a recent GPU):
#   bash benchmarks/gpu_check.sh [OUTDIR]
# It first checks that training and decoding replayed from CUDA graphs give the eager numbers on
# this GPU (tests/test_graphs.py, when pytest is installed). It then prints, and writes as JSON
# under OUTDIR, in this order (the most wanted numbers first, so that a run cut short still has
# them):
#   1. the whole pipeline at the `gpu` scale on the GPU, from scratch: time per stage, peak GPU
#      memory, precision and the gold-judge results. It trains in BIG_PRECISION (default fp16
#      with loss scaling, the number format of Colab's T4, whatever the GPU);
#   2. throughput of every phase for the `cpu` and the `gpu` configuration on the GPU, KV cache
#      on and off; at the same time, on two other cores, the `cpu` configuration on 2 CPU
#      threads (the GPU-vs-CPU ratio). The `cpu` configuration is measured twice on the GPU:
#      eagerly, and with its training steps and generated tokens replayed from CUDA graphs
#      (RLHF_CUDA_GRAPHS=1);
#   3. the whole pipeline at the `cpu` scale on the GPU, from scratch, against the 2-core CPU
#      run kept in benchmarks/results/;
#   4. the same with CUDA graphs.
# A step that fails is reported and the next one still runs; the exit status says whether all
# of them worked.
# DEVICE=cpu SMALL=ci BIG=ci FRESH= runs the same steps on a CPU in a few minutes (the test
# suite does this to keep the script working on machines without a GPU).
set -uo pipefail
OUT=${1:-gpu_check_out}
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-cpu}
BIG=${BIG:-gpu}
BIG_PRECISION=${BIG_PRECISION-fp16}
mkdir -p "$OUT"
export TQDM_DISABLE=1 RLHF_NONINTERACTIVE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 PYTHONUNBUFFERED=1
export RLHF_CACHE="${RLHF_CACHE:-$OUT/cache}"
FRESH=${FRESH---fresh}   # FRESH= reuses cached stages (the test suite does; the check itself starts from scratch)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Without an installed package, use the checkout (no network is needed).
"$PY" -c "import rlhf_minimal" 2>/dev/null || export PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import rlhf_minimal" || { echo "rlhf_minimal cannot be imported: pip install -e . first"; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
# Pin the 2-thread CPU benchmark to two cores and the GPU work to the others, where there are enough.
cores=$(nproc)
if command -v taskset >/dev/null && [ "$cores" -ge 6 ]; then
  ON_CPU2="taskset -c 0,1"; ON_REST="taskset -c 2-$((cores - 1))"
else
  ON_CPU2=""; ON_REST=""
fi
failed=()
step() {  # step NAME COMMAND...: run one step, report a failure and go on
  local name=$1; shift
  local t0=$(date +%s)
  "$@" || { echo "!! step '$name' failed (exit $?)"; failed+=("$name"); }
  echo "-- $name: $(( $(date +%s) - t0 )) s"
}
start=$(date +%s)

if [ "$DEVICE" != cpu ] && "$PY" -c "import pytest" 2>/dev/null; then
  echo "== 0. are CUDA graphs right on $DEVICE? (tests/test_graphs.py, about a minute)"
  step "graph tests" $ON_REST "$PY" -m pytest -q -p no:cacheprovider "$HERE/../tests/test_graphs.py"
fi

precision_env=()
[ "$DEVICE" != cpu ] && [ -n "$BIG_PRECISION" ] && precision_env=(env RLHF_PRECISION="$BIG_PRECISION")
echo "== 1. the whole pipeline at the $BIG scale on $DEVICE, from scratch${precision_env:+ (RLHF_PRECISION=$BIG_PRECISION)}"
step "run $BIG" $ON_REST "${precision_env[@]}" "$PY" -m rlhf_minimal run --scale "$BIG" --device "$DEVICE" $FRESH \
  --out "$OUT/run_${BIG}_on_${DEVICE}.json"

echo "== 2. throughput: the $SMALL configuration on 2 CPU threads (in the background), $SMALL and $BIG on $DEVICE"
$ON_CPU2 "$PY" -m rlhf_minimal bench --scale "$SMALL" --device cpu --threads 2 --repeats 2 \
  --out "$OUT/bench_${SMALL}_on_cpu2.json" > "$OUT/bench_cpu2.log" 2>&1 &
cpu_bench=$!
step "bench $SMALL on $DEVICE" $ON_REST "$PY" -m rlhf_minimal bench --scale "$SMALL" --device "$DEVICE" \
  --out "$OUT/bench_${SMALL}_on_${DEVICE}.json"
step "bench $SMALL on $DEVICE, CUDA graphs" $ON_REST env RLHF_CUDA_GRAPHS=1 "$PY" -m rlhf_minimal bench \
  --scale "$SMALL" --device "$DEVICE" --out "$OUT/bench_${SMALL}_on_${DEVICE}_graphs.json"
step "bench $BIG on $DEVICE" $ON_REST "$PY" -m rlhf_minimal bench --scale "$BIG" --device "$DEVICE" \
  --out "$OUT/bench_${BIG}_on_${DEVICE}.json"

echo "== 3. the whole pipeline at the $SMALL scale on $DEVICE, from scratch"
step "run $SMALL" $ON_REST "$PY" -m rlhf_minimal run --scale "$SMALL" --device "$DEVICE" $FRESH \
  --out "$OUT/run_${SMALL}_on_${DEVICE}.json"

echo "== 4. the same with CUDA graphs"
step "run $SMALL, CUDA graphs" $ON_REST env RLHF_CUDA_GRAPHS=1 "$PY" -m rlhf_minimal run \
  --scale "$SMALL" --device "$DEVICE" $FRESH --out "$OUT/run_${SMALL}_on_${DEVICE}_graphs.json"

wait $cpu_bench || { echo "!! step 'bench $SMALL on 2 CPU threads' failed"; failed+=("bench cpu2"); }
echo "-- the $SMALL configuration on 2 CPU threads:"; cat "$OUT/bench_cpu2.log"
echo "== summary ($(( $(date +%s) - start )) s in all)"
step summary "$PY" "$HERE/summarize.py" "$OUT" --small "$SMALL" --big "$BIG" --device "$DEVICE" \
  --reference "$HERE/results/run_${SMALL}_on_cpu2.json"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed steps: ${failed[*]}"; exit 1
fi

#!/usr/bin/env bash
# The installs people actually get, each in a throw-away environment of its own (make test runs both):
#
#   scripts/check_installs.sh lowest DIR   the lowest versions pyproject.toml allows: a lowest-direct
#                                          resolution (every dependency of the package at its floor)
#                                          on the oldest Python it allows; runs the unit tests and
#                                          labs 00 and 05
#   scripts/check_installs.sh colab DIR    Colab's kind of set-up: its Python, a torch installed first
#                                          (and kept), ipywidgets 7.7, then the package installed by the
#                                          labs' own set-up cell from this copy of the repository; runs
#                                          the widget test (lab 3's panel, clicked without a browser),
#                                          and labs 00, 03 and 05
#
# Each is two steps, which can also run apart: `prepare MODE DIR` builds the environment (mostly
# downloads: make test runs it in the background while its own tests use the cores) and `test MODE
# DIR` runs the tests in it, waiting for a prepare still running and preparing first if none did.
#
# Each prints the versions it resolved. The environments live under DIR (make test: .envs); the
# downloads stay in uv's cache. The labs run at the scale in RLHF_SCALE (make test: ci) and share
# the stage cache in RLHF_CACHE with the rest of make test.
set -euo pipefail
usage="usage: scripts/check_installs.sh [prepare|test] lowest|colab DIR"
step=both
case ${1:-} in prepare|test) step=$1; shift ;; esac
mode=${1:?$usage}
base=${2:?$usage}
case $mode in lowest|colab) ;; *) echo "check_installs: unknown mode '$mode' (lowest or colab)" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
UV=${UV:-$(command -v uv || true)}
[ -x "$UV" ] || { echo "check_installs: uv not found (it comes with the dev extras: pip install -e '.[dev]')" >&2; exit 1; }
export UV_PYTHON_DOWNLOADS=never   # only the Pythons on this machine

# A Python of the first of the given versions that this machine has (on PATH, or one of pyenv's);
# a fallback other than the first is said in the log.
find_python() {
  local v p
  for v in "$@"; do
    for p in "$(command -v "python$v" 2>/dev/null || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v"; do
      if [ -n "$p" ] && [ -x "$p" ] && "$p" -c pass 2>/dev/null; then
        [ "$v" = "$1" ] || echo "check_installs: no python$1 here, using python$v" >&2
        "$p" -c 'import sys; print(sys.executable)'; return
      fi
    done
  done
  echo "check_installs: none of python$* found" >&2
  return 1
}

# The versions an environment ended with, one per line, for the log.
show_versions() {
  echo "== $1: resolved versions"
  "$2" -c 'import platform; print("python", platform.python_version())'
  "$UV" pip freeze --quiet --python "$2" | grep -iE '^(-e )?(torch|numpy|safetensors|datasets|tqdm|matplotlib|ipywidgets|transformers|trl|accelerate|huggingface[-_]hub|tokenizers|pandas|pytest|nbval|ipykernel|rlhf.minimal|file:)( |=|@|/)' \
    | sed 's/^/  /'
}

# pytest in the environment; the labs run in a kernel of that same environment (--nbval-current-env)
# (one thread per pytest worker: two workers of two threads each on two cores wait on each other,
# which made these tests nearly twice as slow)
run_tests() {  # python, then pytest's arguments
  local py=$1; shift
  RLHF_SCALE=${RLHF_SCALE:-ci} RLHF_NONINTERACTIVE=1 TQDM_DISABLE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 \
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$py" -m pytest -p no:cacheprovider -q -n "${JOBS:-2}" --dist loadscope --nbval-lax \
    --nbval-current-env --nbval-kernel-startup-timeout=300 "$@"
}

# ------------------------------------------------------------------- building the environments
prepare_lowest() {
  # requires-python's floor, or the oldest Python here that it allows
  floor=$(sed -n 's/^requires-python *= *">=\([0-9.]*\)".*/\1/p' pyproject.toml)
  py=$(find_python "$floor" 3.11 3.12 3.13)
  dir=$base/lowest
  rm -rf "$dir"; mkdir -p "$dir"
  "$UV" pip compile pyproject.toml --resolution lowest-direct --python "$py" --quiet --no-header \
    --no-annotate -o "$dir/requirements.txt"
  # Each floor must be what the resolution gives: a floor lower than what the package's own
  # dependencies allow is a floor that nothing tests. (Only on the floor's Python: on a newer one
  # some floors have no wheels, and the difference is only reported.)
  strict=$("$py" -c "import sys; print(int('%d.%d' % sys.version_info[:2] == '$floor'))")
  "$py" - "$dir/requirements.txt" "$strict" <<'EOF'
import re, sys
text = open("pyproject.toml").read()
deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
floors = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', deps))
got = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", open(sys.argv[1]).read(), re.M))
norm = lambda name: name.lower().replace("_", "-")
got = {norm(k): v for k, v in got.items()}
pad = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)) + (0,) * 3
wrong = [f"{n}>={v} resolves to {got.get(norm(n))}" for n, v in floors.items()
         if pad(got.get(norm(n), "0"))[:3] != pad(v)[:3]]
if wrong:
    message = ("check_installs: pyproject.toml's floors are not what a lowest-direct resolution "
               "installs; raise them to the versions resolved:\n  " + "\n  ".join(wrong))
    if sys.argv[2] == "1":
        sys.exit(message)
    print(message.replace("; raise", " on this Python; on the floor's, raise"), file=sys.stderr)
EOF
  "$UV" venv --quiet --python "$py" "$dir/venv"
  vpy=$dir/venv/bin/python
  "$UV" pip install --quiet --python "$vpy" -r "$dir/requirements.txt"
  # the test tools at the newest versions that keep every floor
  "$UV" pip install --quiet --python "$vpy" -c "$dir/requirements.txt" pytest pytest-xdist nbval ipykernel pyyaml
  "$UV" pip install --quiet --python "$vpy" --no-deps -e .
  show_versions "lowest versions" "$vpy"
}

prepare_colab() {
  py=$(find_python "${COLAB_PYTHON:-3.12}" 3.11 3.13 3.10)
  dir=$base/colab
  rm -rf "$dir"; mkdir -p "$dir"
  "$UV" venv --quiet --seed --python "$py" "$dir/venv"   # --seed: pip, which the set-up cell uses
  vpy=$dir/venv/bin/python
  # What a Colab runtime has before the first cell: its own torch (a CUDA build), numpy 2.0,
  # ipywidgets 7.7, transformers and the notebook kernel.
  "$UV" pip install --quiet --python "$vpy" "torch==${COLAB_TORCH:-2.8.0}" numpy==2.0.2 ipywidgets==7.7.1 \
    transformers==4.57.1 matplotlib pandas tqdm ipykernel pytest pytest-xdist nbval pyyaml
  before=$("$vpy" -c 'import torch, ipywidgets; print(torch.__version__, ipywidgets.__version__)')
  had_build=$([ -e build ] && echo 1 || true)
  # The package, installed by the labs' set-up cell itself, from this copy instead of the network.
  "$vpy" - <<'EOF'
import json, os
cell = next(c for c in json.load(open("labs/00_setup.ipynb"))["cells"] if c["cell_type"] == "code")
os.environ["RLHF_INSTALL_FROM"] = os.getcwd()
exec("".join(cell["source"]))
EOF
  [ -n "$had_build" ] || rm -rf build   # what pip's build of this folder left behind
  after=$("$vpy" -c 'import torch, ipywidgets; print(torch.__version__, ipywidgets.__version__)')
  show_versions "Colab-like" "$vpy"
  [ "$before" = "$after" ] || { echo "check_installs: installing the package replaced Colab's torch or ipywidgets: $before -> $after" >&2; exit 1; }
  echo "  torch and ipywidgets kept: $after"
}

# ------------------------------------------------------------------- their tests
test_lowest() {
  local vpy=$base/lowest/venv/bin/python
  # The unit tests that use the dependencies (not the repository's own rules, nor the book, the
  # timing table and the benchmark scripts, whose tools the main environment has), and labs 00 and 05.
  run_tests "$vpy" tests labs/00_setup.ipynb labs/05_ppo.ipynb \
    --ignore=tests/test_repo.py --ignore=tests/test_editions.py --ignore=tests/test_rendered_book.py \
    --ignore=tests/test_pipeline.py --ignore=tests/test_timings.py
}

test_colab() {
  local vpy=$base/colab/venv/bin/python
  run_tests "$vpy" tests/test_widgets.py tests/test_recorded.py::test_the_installed_package_ships_every_recorded_run \
    labs/00_setup.ipynb labs/03_preference_data.ipynb labs/05_ppo.ipynb
}

# ------------------------------------------------------------------- the steps
mkdir -p "$base"
exec 9>"$base/$mode.lock"   # held while preparing or testing: a test waits for a prepare still running
flock 9
log=$base/$mode.prepare.log      # where make test's prepare in the background writes
case $step in
prepare|both)
  rm -f "$base/$mode.ready"
  "prepare_$mode"
  touch "$base/$mode.ready" ;;
test)
  if [ -e "$base/$mode.ready" ]; then
    [ ! -s "$log" ] || cat "$log"   # the versions it printed
  else
    [ ! -s "$log" ] || { echo "== $mode: preparing in the background failed:"; cat "$log"; echo "== $mode: preparing again"; }
    "prepare_$mode"
    touch "$base/$mode.ready"
  fi ;;
esac
[ "$step" = prepare ] || "test_$mode"

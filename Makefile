# Two commands for a fresh machine:
#   make book   build the book (executes the labs at the scale in RLHF_SCALE, default: cpu, also on a GPU)
#   make test   run every test (unit tests, every lab under nbval at the ci scale, the book build, and
#               the two install checks: lowest versions, Colab-like)
# Both create .venv and install everything on first use.
#
# Two editions of the book, built from the same sources:
#   make book           the instructor edition, into _build/html: each exercise's worked solution in a dropdown
#   make book-student   the student edition, into _build/student/html: every solution and the
#                       instructors' guide left out (sphinx-exercise's hide_solutions), and no page
#                       sources to download
#   make figures        every figure of the book as a slide-sized PNG, into _build/figures

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
ENVS   := .envs

.PHONY: book book-student figures test venv clean clean-cache

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The labs run once; jupyter-cache (_build/.jupyter_cache) keeps their outputs, so a second
# `make book` with nothing changed re-executes nothing. jupyter-cache only sees the notebooks,
# so when the package's code changes the executed outputs are thrown away and the labs re-run.
book: export RLHF_NONINTERACTIVE = 1
book: export TQDM_DISABLE = 1
book: export HF_DATASETS_DISABLE_PROGRESS_BARS = 1
book: venv
	$(BIN)/python -m rlhf_minimal.scale
	@mkdir -p _build; code=$$($(BIN)/python -m rlhf_minimal.cache fingerprint); \
	if [ "$$(cat _build/.package_fingerprint 2>/dev/null)" != "$$code" ]; then \
	  rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute; \
	  echo "$$code" > _build/.package_fingerprint; fi
	$(BIN)/jupyter-book build . --path-output .

# The student edition: the same build with sphinx-exercise's hide_solutions on, so no {solution}
# block reaches the HTML, and without the instructors' guide (answer keys, grading): its table of
# contents is _toc.yml less the guide (scripts/student_toc.py). The page sources hold the solutions,
# so they are neither copied into the output nor offered for download. It shares the executed labs (and their cache) with `make book`.
# tests/test_editions.py builds both editions with these flags.
STUDENT_FLAGS := -D hide_solutions=1 -D html_copy_source=0 -D html_theme_options.use_download_button=false -D external_toc_path=_build/student/_toc.yml
book-student: export RLHF_NONINTERACTIVE = 1
book-student: export TQDM_DISABLE = 1
book-student: export HF_DATASETS_DISABLE_PROGRESS_BARS = 1
book-student: venv
	$(BIN)/python -m rlhf_minimal.scale
	@mkdir -p _build; code=$$($(BIN)/python -m rlhf_minimal.cache fingerprint); \
	if [ "$$(cat _build/.package_fingerprint 2>/dev/null)" != "$$code" ]; then \
	  rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute; \
	  echo "$$code" > _build/.package_fingerprint; fi
	$(BIN)/python scripts/student_toc.py _build/student/_toc.yml
	$(BIN)/jupyter-book config sphinx . > /dev/null
	$(BIN)/sphinx-build -b html $(STUDENT_FLAGS) -d _build/student/.doctrees . _build/student/html

# Every figure of the book as a PNG at slide resolution, into _build/figures (the book's own
# copies in book/figures are left as they are; `python book/figures/make_figures.py` redraws those).
figures: venv
	$(BIN)/python book/figures/make_figures.py --out _build/figures --dpi 220

# Order: scale check; the two install checks' environments built in the background (mostly
# downloads, see below); the book build (warnings are errors, labs not executed: nbval runs them);
# one pytest run for the unit tests and nbval; then the install checks' own tests in those
# environments. Each step's failure fails make test.
test: export RLHF_SCALE ?= ci
test: export TQDM_DISABLE = 1
test: export HF_DATASETS_DISABLE_PROGRESS_BARS = 1
test: export RLHF_NONINTERACTIVE = 1
test: export RLHF_CACHE ?= $(CURDIR)/.rlhf_cache
# one thread for each of the JOBS pytest workers: two workers of two threads each on two cores wait
# on each other, which made the tests three times slower (16 minutes instead of 5)
test: export OMP_NUM_THREADS ?= 1
test: venv
	$(BIN)/python -m rlhf_minimal.scale
	@mkdir -p $(ENVS); for mode in lowest colab; do \
	  UV=$(BIN)/uv nice -n 10 bash scripts/check_installs.sh prepare $$mode $(ENVS) > $(ENVS)/$$mode.prepare.log 2>&1 & done
	$(BIN)/jupyter-book config sphinx . > /dev/null
	$(BIN)/sphinx-build -q -b html -W --keep-going -D nb_execution_mode=off . _build/test-html
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope --nbval-lax tests labs
	UV=$(BIN)/uv JOBS=$(JOBS) bash scripts/check_installs.sh test lowest $(ENVS)
	UV=$(BIN)/uv JOBS=$(JOBS) bash scripts/check_installs.sh test colab $(ENVS)

# The installs people actually get, each in a throw-away environment under .envs that prints the
# versions it resolved (scripts/check_installs.sh): the lowest versions pyproject.toml allows (unit
# tests, labs 00 and 05) and Colab's kind of set-up (lab 3's panel, labs 00, 03 and 05). Each
# downloads its own torch (a CUDA build, about 3 GB, kept in uv's cache). They share the stage
# cache with make test, so after it they train only what their labs train themselves. make test
# runs both; these run one alone.
.PHONY: check-lowest check-colab
check-lowest check-colab: export RLHF_SCALE ?= ci
check-lowest check-colab: export RLHF_CACHE ?= $(CURDIR)/.rlhf_cache
check-lowest: venv
	UV=$(BIN)/uv JOBS=$(JOBS) bash scripts/check_installs.sh lowest $(ENVS)
check-colab: venv
	UV=$(BIN)/uv JOBS=$(JOBS) bash scripts/check_installs.sh colab $(ENVS)

# The built book as a reader sees it: every page in headless Chromium, three chapters screenshotted.
.PHONY: check-book
check-book: venv
	test -f _build/test-html/index.html || { $(BIN)/jupyter-book config sphinx . > /dev/null && \
	  $(BIN)/sphinx-build -q -b html -W --keep-going -D nb_execution_mode=off . _build/test-html; }
	$(BIN)/python scripts/check_rendered_book.py _build/test-html --screenshots _build/screenshots \
	  book/03_preference_data book/05_ppo book/06_pipeline

clean:
	rm -rf _build conf.py $(ENVS)

clean-cache:
	rm -rf .rlhf_cache

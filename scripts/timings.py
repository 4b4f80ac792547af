"""How long the labs and the book take: one table, measured by one command, included everywhere.

    python scripts/timings.py measure --scale cpu          # every lab, then `make book`, cold and warm
    python scripts/timings.py measure --scale ci --labs 00_setup 01_world_and_base_model --no-book
    python scripts/timings.py render benchmarks/results/timings_cpu_on_cpu2.json

`measure` times, in a throw-away copy of the repository (the tracked files) and a new, empty stage
cache, so that nothing of yours is reused or overwritten:

- the book (`jupyter-book build`, which executes every lab in reading order) from an empty stage
  cache and no executed notebooks (*cold*), and each lab's share of it, read from the execution
  times jupyter-cache records: the first time through the course, each lab building the stages no
  earlier lab built;
- then every lab again, alone, with every stage cached (*warm*), and the book once more with nothing
  changed (*warm*: no lab re-runs).

With `--no-book` the cold pass runs each lab by itself in reading order instead.

It writes the measurements as JSON (``benchmarks/results/timings_<scale>_on_<machine>.json``) and
then renders them, as `render` does: the markdown table ``book/timings_table.md``, which the
preface and the instructors' guide include, and the same table between the ``timings`` markers of
README.md. Change the table's numbers only by measuring again.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "book" / "timings_table.md"
README = ROOT / "README.md"
README_START = "<!-- timings: written by scripts/timings.py render; edit the JSON, not this table -->"
README_END = "<!-- end of timings -->"


class TimingError(RuntimeError):
    """A lab or the book build failed while being timed."""


# ----------------------------------------------------------------------------- rendering

def _seconds(value: float | None) -> str:
    """``83 s``, ``1,577 s (26 min)``; a dash where nothing was measured."""
    if value is None:
        return "—"
    text = f"{value:,.0f} s"
    return f"{text} ({value / 60:.0f} min)" if value >= 600 else text


def render_table(report: dict) -> str:
    """The markdown table of a timings report: one row per lab and one for the book, cold and warm."""
    lines = [f"Measured at the `{report['scale']}` scale on {report['machine']} ({report['date']}); "
             f"*cold*: {report['cold']}; *warm*: {report['warm']}.",
             "",
             "| | cold stage cache | warm stage cache |",
             "| --- | --- | --- |"]
    for row in report["labs"]:
        lines.append(f"| lab {row['lab']} | {_seconds(row['cold_s'])} | {_seconds(row['warm_s'])} |")
    book = report.get("book")
    if book is not None:
        lines.append(f"| `make book` (every lab executed) | {_seconds(book['cold_s'])} | {_seconds(book['warm_s'])} |")
    if report.get("note"):
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def replace_readme_block(readme: str, table: str) -> str:
    """``readme`` with the text between the timings markers replaced by ``table``."""
    if README_START not in readme or README_END not in readme:
        raise TimingError(f"README.md has no timings block: put the two lines\n{README_START}\n{README_END}\n"
                          "where the table belongs, then render again.")
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{table}{README_END}{tail}"


def render(report_path: Path) -> None:
    report = json.loads(report_path.read_text())
    table = render_table(report)
    TABLE.write_text(table)
    README.write_text(replace_readme_block(README.read_text(), table))
    print(f"wrote {TABLE.relative_to(ROOT)} and the table in README.md from {report_path.relative_to(ROOT)}")


# ----------------------------------------------------------------------------- measuring

def _copy_of_repository(into: Path) -> Path:
    """The tracked files of the repository, copied into ``into`` (no build, no caches)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in files.decode().split("\0"):
        if name:
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    return into


def _run_lab(path: Path, env: dict, timeout: int) -> float:
    """Execute one notebook from top to bottom in its own folder; seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as error:  # noqa: BLE001 - re-raised with the lab's name
        raise TimingError(f"{path.name} failed while being timed: {error}") from error
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return time.perf_counter() - start


def _build_book(copy: Path, env: dict) -> float:
    start = time.perf_counter()
    run = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--path-output", "."],
                         cwd=copy, env={**os.environ, **env}, capture_output=True, text=True)
    if run.returncode != 0:
        raise TimingError(f"the book build failed while being timed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return time.perf_counter() - start


def _book_lab_seconds(copy: Path) -> dict[str, float]:
    """Seconds each lab took to execute in the book build, from jupyter-cache's records."""
    from jupyter_cache import get_cache

    seconds = {}
    for record in get_cache(str(copy / "_build" / ".jupyter_cache")).list_cache_records():
        taken = (record.data or {}).get("execution_seconds")
        if taken is not None:
            seconds[Path(record.uri).stem] = float(taken)
    return seconds


def measure(scale: str, labs: list[str] | None, book: bool, machine: str, timeout: int) -> dict:
    all_labs = sorted(p.stem for p in (ROOT / "labs").glob("*.ipynb"))
    chosen = labs or all_labs
    unknown = [lab for lab in chosen if lab not in all_labs]
    if unknown:
        raise TimingError(f"no such lab: {unknown}; the labs are {all_labs}")
    if book and labs:
        raise TimingError("the book executes every lab: leave out --labs, or add --no-book")
    with tempfile.TemporaryDirectory(prefix="rlhf_timings_") as tmp:
        copy = _copy_of_repository(Path(tmp) / "repo")
        env = {"RLHF_SCALE": scale, "RLHF_NONINTERACTIVE": "1", "TQDM_DISABLE": "1",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "RLHF_CACHE": str(Path(tmp) / "stages"),
               "PYTHONPATH": str(copy) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        book_times = None
        if book:  # cold: the book from the empty stage cache, each lab's share from jupyter-cache
            cold = _build_book(copy, env)
            print(f"make book: {cold:.0f} s cold", flush=True)
            shares = _book_lab_seconds(copy)
            missing = [lab for lab in chosen if lab not in shares]
            if missing:
                raise TimingError(f"the book build recorded no execution time for {missing}")
            rows = [{"lab": lab, "cold_s": round(shares[lab], 1), "warm_s": None} for lab in chosen]
            for row in rows:
                print(f"{row['lab']}: {row['cold_s']:.0f} s cold (in the book build)", flush=True)
        else:  # cold: each lab in reading order, from the empty stage cache
            rows = []
            for lab in chosen:
                seconds = _run_lab(copy / "labs" / f"{lab}.ipynb", env, timeout)
                rows.append({"lab": lab, "cold_s": round(seconds, 1), "warm_s": None})
                print(f"{lab}: {seconds:.0f} s cold", flush=True)
        for row in rows:  # warm: every stage now cached
            row["warm_s"] = round(_run_lab(copy / "labs" / f"{row['lab']}.ipynb", env, timeout), 1)
            print(f"{row['lab']}: {row['warm_s']:.0f} s warm", flush=True)
        if book:
            warm = _build_book(copy, env)
            print(f"make book: {warm:.0f} s warm", flush=True)
            book_times = {"cold_s": round(cold, 1), "warm_s": round(warm, 1)}
    return {
        "scale": scale,
        "machine": machine,
        "date": datetime.date.today().isoformat(),
        "cold": ("the book from an empty stage cache and no executed notebooks, and each lab's share of it "
                 "(the labs run in reading order, each building the stages no earlier lab built)" if book else
                 "each lab in reading order from an empty stage cache, building what no earlier lab built"),
        "warm": "each lab again by itself, every stage cached" + ("; the book again with nothing changed" if book else ""),
        "labs": rows,
        "book": book_times,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_threads": os.cpu_count(),
    }


def _machine_slug(machine: str) -> str:
    """``2 CPU cores`` -> ``cpu2`` (the repository's naming of reports); anything else lower-cased,
    with underscores for spaces."""
    import re

    cores = re.fullmatch(r"(\d+) CPU cores?", machine.strip())
    return f"cpu{cores.group(1)}" if cores else re.sub(r"\W+", "_", machine.strip().lower())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time the labs and the book, then render")
    m.add_argument("--scale", required=True, choices=["ci", "cpu", "gpu"])
    m.add_argument("--labs", nargs="*", default=None, help="lab names (default: every lab)")
    m.add_argument("--no-book", action="store_true", help="leave out the book build")
    m.add_argument("--machine", default=f"{os.cpu_count()} CPU cores",
                   help="the machine, in words, for the table (default: the CPU count)")
    m.add_argument("--out", type=Path, default=None, help="the JSON report (default: benchmarks/results/...)")
    m.add_argument("--timeout", type=int, default=3600, help="seconds allowed per notebook cell")
    m.add_argument("--no-render", action="store_true", help="write the JSON only")
    r = sub.add_parser("render", help="write the table from a JSON report")
    r.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    if args.command == "render":
        render(args.report.resolve())
        return
    report = measure(args.scale, args.labs, not args.no_book, args.machine, args.timeout)
    out = args.out or ROOT / "benchmarks" / "results" / f"timings_{args.scale}_on_{_machine_slug(args.machine)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    if not args.no_render:
        render(out.resolve())


if __name__ == "__main__":
    main()

"""The timing table (scripts/timings.py): rendered from a measured report, and the copies the book
and the README show are that rendering, not hand edits."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import timings  # noqa: E402

REPORT = {"scale": "ci", "machine": "2 CPU cores", "date": "2026-12-07", "cold": "from nothing",
          "warm": "all cached",
          "labs": [{"lab": "00_setup", "cold_s": 61.2, "warm_s": 9.0},
                   {"lab": "06_pipeline", "cold_s": 1675.4, "warm_s": None}],
          "book": {"cold_s": 900.0, "warm_s": 31.0}}


def test_render_table_has_a_row_per_lab_and_the_book_with_both_columns():
    lines = timings.render_table(REPORT).splitlines()
    assert lines[0].startswith("Measured at the `ci` scale on 2 CPU cores (2026-12-07)")
    assert "| lab 00_setup | 61 s | 9 s |" in lines
    assert "| lab 06_pipeline | 1,675 s (28 min) | — |" in lines  # unmeasured: a dash, never a zero
    assert "| `make book` (every lab executed) | 900 s (15 min) | 31 s |" in lines


def test_readme_block_is_replaced_and_only_it():
    readme = f"intro\n{timings.README_START}\nold table\n{timings.README_END}\nrest\n"
    new = timings.replace_readme_block(readme, "| new |\n")
    assert new == f"intro\n{timings.README_START}\n| new |\n{timings.README_END}\nrest\n"
    with pytest.raises(timings.TimingError, match="no timings block"):
        timings.replace_readme_block("no markers here", "| new |\n")


def test_machine_names_follow_the_reports_naming():
    assert timings._machine_slug("2 CPU cores") == "cpu2"
    assert timings._machine_slug("one H200") == "one_h200"


def test_the_book_and_the_readme_show_a_rendering_of_a_committed_report():
    table = (ROOT / "book" / "timings_table.md").read_text()
    reports = sorted((ROOT / "benchmarks" / "results").glob("timings_*.json"))
    renderings = {p.name: timings.render_table(json.loads(p.read_text())) for p in reports}
    assert table in renderings.values(), ("book/timings_table.md is not the rendering of any "
                                          "benchmarks/results/timings_*.json: run scripts/timings.py render")
    readme = (ROOT / "README.md").read_text()
    assert timings.replace_readme_block(readme, table) == readme, (
        "README.md's timing table differs from book/timings_table.md: run scripts/timings.py render")
    for page in ("preface.md", "instructors_guide.md"):
        assert "```{include} timings_table.md" in (ROOT / "book" / page).read_text(), page


def test_each_labs_share_of_the_book_build_is_read_from_jupyter_caches_records(tmp_path):
    """The cold column comes from the execution times jupyter-cache stored while the book ran the
    labs: one entry per executed notebook, named by its file."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(tmp_path / "_build" / ".jupyter_cache"))
    for name, seconds in (("00_setup", 12.5), ("06_pipeline", 301.0)):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"print({seconds})", execution_count=1)])
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(tmp_path / "labs" / f"{name}.ipynb"),
                                                  data={"execution_seconds": seconds}), check_validity=False)
    assert timings._book_lab_seconds(tmp_path) == {"00_setup": 12.5, "06_pipeline": 301.0}
    with pytest.raises(timings.TimingError, match="executes every lab"):
        timings.measure("ci", ["00_setup"], book=True, machine="2 CPU cores", timeout=60)

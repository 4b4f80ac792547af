"""The two editions of the book: the instructor edition (`make book`) shows each exercise's worked
solution, the student edition (`make book-student`) leaves every solution out. Both are built here
without executing the labs (as `make test` builds the book), with the student flags read from the
Makefile, so the test checks what the target ships."""
import html
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "06_pipeline.md"

# From exercise ex-ch6-win-rate of chapter 6: a sentence of the exercise, and one of its solution.
EXERCISE_TEXT = "makes a better headline than the mean gold score"
SOLUTION_TEXT = "One reference puts every model on one axis"


def _normal(text: str) -> str:
    """Text with tags dropped, entities decoded and every run of whitespace one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _student_flags() -> list:
    match = re.search(r"^STUDENT_FLAGS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile defines STUDENT_FLAGS for its book-student target"
    return shlex.split(match.group(1))


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _build(out: Path, flags: list) -> Path:
    html_dir = out / "html"
    command = [_tool("sphinx-build"), "-q", "-b", "html", "-W", "--keep-going", "-D", "nb_execution_mode=off",
               *flags, "-d", str(out / "doctrees"), ".", str(html_dir)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, f"{shlex.join(command)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    assert "WARNING" not in run.stderr, run.stderr[-6000:]
    return html_dir


def _instructor_edition(tmp_path: Path) -> Path:
    """The instructor edition is the book `make test` builds first (the same command, no flags):
    _build/test-html when that build is there and no page source is newer, else built here."""
    built = ROOT / "_build" / "test-html"
    if (built / "index.html").is_file():
        stamp = (built / "index.html").stat().st_mtime
        sources = [p for pattern in ("book/*.md", "book/*.bib", "labs/*.ipynb", "_config.yml", "_toc.yml")
                   for p in ROOT.glob(pattern)]
        if all(p.stat().st_mtime <= stamp for p in sources):
            return built
    return _build(tmp_path / "instructor", [])


def _files_containing(folder: Path, text: str) -> list:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".js", ".txt", ".md", ".ipynb", ".json"):
            if text in _normal(path.read_text(errors="replace")):
                found.append(str(path.relative_to(folder)))
    return found


def test_instructor_edition_shows_solutions_and_student_edition_leaves_them_out(tmp_path):
    pytest.importorskip("sphinx_exercise")
    source = _normal(CHAPTER.read_text())
    for text in (EXERCISE_TEXT, SOLUTION_TEXT):
        assert text in source, (f"{text!r} is no longer in {CHAPTER.name}: pick another sentence of "
                                "exercise ex-ch6-win-rate and its solution for this test")

    subprocess.run([_tool("jupyter-book"), "config", "sphinx", "."], cwd=ROOT, check=True, capture_output=True)
    instructor = _instructor_edition(tmp_path)
    student = _build(tmp_path / "student", _student_flags())

    page = "book/06_pipeline.html"
    instructor_page = _normal((instructor / page).read_text())
    student_page = _normal((student / page).read_text())
    assert EXERCISE_TEXT in instructor_page and EXERCISE_TEXT in student_page
    assert SOLUTION_TEXT in instructor_page
    assert SOLUTION_TEXT not in student_page

    # Not anywhere else in the student edition either: no page source, no search index entry.
    assert _files_containing(student, SOLUTION_TEXT) == []
    solution_boxes = re.compile(r'class="solution[ "]')
    assert all(not solution_boxes.search(p.read_text()) for p in student.rglob("*.html"))
    assert any(solution_boxes.search(p.read_text()) for p in instructor.rglob("*.html"))

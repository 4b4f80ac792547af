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


def _write_student_toc(flags: list) -> None:
    """Write the student table of contents where the student flags point (as `make book-student`
    does with scripts/student_toc.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from student_toc import main as write_student_toc

    paths = [f.split("=", 1)[1] for f in flags if f.startswith("external_toc_path=")]
    assert paths, "STUDENT_FLAGS point the build at the student table of contents (external_toc_path)"
    write_student_toc(ROOT / paths[0])


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


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """The instructor and the student edition, built once for this module's tests."""
    pytest.importorskip("sphinx_exercise")
    tmp_path = tmp_path_factory.mktemp("editions")
    subprocess.run([_tool("jupyter-book"), "config", "sphinx", "."], cwd=ROOT, check=True, capture_output=True)
    instructor = _instructor_edition(tmp_path)
    flags = _student_flags()
    _write_student_toc(flags)
    return instructor, _build(tmp_path / "student", flags)


def test_instructor_edition_shows_solutions_and_student_edition_leaves_them_out(editions):
    source = _normal(CHAPTER.read_text())
    for text in (EXERCISE_TEXT, SOLUTION_TEXT):
        assert text in source, (f"{text!r} is no longer in {CHAPTER.name}: pick another sentence of "
                                "exercise ex-ch6-win-rate and its solution for this test")
    instructor, student = editions

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


GUIDE_TEXT = "Answer keys: what to look for in each lab"  # a heading of book/instructors_guide.md


def test_student_edition_leaves_out_the_instructors_guide(editions):
    """The instructors' guide (answer keys, grading) is in the instructor edition and nowhere in the
    student edition: no page, no link in the navigation, no search-index entry."""
    assert GUIDE_TEXT in (ROOT / "book" / "instructors_guide.md").read_text(), (
        f"{GUIDE_TEXT!r} is no longer a heading of the instructors' guide: pick another for this test")
    instructor, student = editions
    assert GUIDE_TEXT in _normal((instructor / "book" / "instructors_guide.html").read_text())
    assert not (student / "book" / "instructors_guide.html").exists()
    assert _files_containing(student, GUIDE_TEXT) == []
    assert all("instructors_guide" not in p.read_text() for p in student.rglob("*.html"))
    # the rest of the book is there
    assert (student / "book" / "06_pipeline.html").is_file() and (student / "book" / "notation.html").is_file()

"""Write the student edition's table of contents: _toc.yml without the pages that are for
instructors only (the instructors' guide, with its answer keys and grading scheme).

    python scripts/student_toc.py [OUT]      # default OUT: _build/student/_toc.yml

`make book-student` runs it and points the build at the result (STUDENT_FLAGS in the Makefile);
pages left out of the table of contents are left out of the build (`only_build_toc_files`)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTORS_ONLY = ("book/instructors_guide",)
DEFAULT_OUT = ROOT / "_build" / "student" / "_toc.yml"


def student_toc(toc: str) -> str:
    """The table of contents ``toc`` (the text of _toc.yml) without its instructors-only entries."""
    kept = [line for line in toc.splitlines(keepends=True)
            if line.strip().removeprefix("- ").strip() not in {f"file: {page}" for page in INSTRUCTORS_ONLY}]
    missing = [page for page in INSTRUCTORS_ONLY if f"file: {page}" not in toc]
    if missing:
        raise ValueError(f"_toc.yml has no entry {missing}: update INSTRUCTORS_ONLY in {Path(__file__).name}")
    return "".join(kept)


def main(out: Path = DEFAULT_OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(student_toc((ROOT / "_toc.yml").read_text()))
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))

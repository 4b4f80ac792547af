"""Equation references between the book and the labs.

Every equation a lab cites must be one the book defines (a label ``$$ ... $$ (eq-name)`` in
book/*.md), and a lab cites it with the {eq} role, which the rendered book turns into the
equation's number and a link, not as the raw label ("following eq-gae"), which a reader sees as
an unexplained name."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted((ROOT / "labs").glob("*.ipynb"))

DEFINED = re.compile(r"\$\$\s*\((eq-[A-Za-z0-9_-]+)\)")  # MyST's labelled display maths
ROLE = re.compile(r"\{eq\}`(eq-[A-Za-z0-9_-]+)`")
ANY_LABEL = re.compile(r"(?<![\w-])(eq-[a-z0-9][a-z0-9-]*[a-z0-9])")

# Labs whose raw references are still to be turned into {eq} roles (none today). Strict: once a
# lab is fixed, its entry fails here as "XPASS" and must be removed.
STILL_RAW: set[str] = set()


def _defined_labels() -> dict:
    labels = {}
    for page in sorted((ROOT / "book").glob("*.md")):
        for label in DEFINED.findall(page.read_text()):
            assert label not in labels, f"{label} is defined twice: in {labels[label]} and {page.name}"
            labels[label] = page.name
    return labels


def _markdown_cells(path: Path):
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "markdown":
            yield index, "".join(cell["source"])


def _raw_labels(text: str) -> list:
    """Labels in ``text`` that are not inside an {eq} role."""
    return ANY_LABEL.findall(ROLE.sub("", text))


def test_the_patterns_tell_a_role_from_a_raw_label():
    text = "following eq-gae, then {eq}`eq-ppo-clip` and (eq-k3); not a label: freq-gae or eq-"
    assert ROLE.findall(text) == ["eq-ppo-clip"]
    assert _raw_labels(text) == ["eq-gae", "eq-k3"]
    assert DEFINED.findall("$$\nx = 1\n$$ (eq-one)\n") == ["eq-one"]


def test_the_book_defines_the_equations_it_cites():
    labels = _defined_labels()
    assert len(labels) > 30, "the book's equation labels were not found: has the $$ ... $$ (label) syntax changed?"
    missing = [(page.name, label) for page in sorted((ROOT / "book").glob("*.md"))
               for label in ROLE.findall(page.read_text()) if label not in labels]
    assert missing == [], f"equations cited in the book but defined nowhere: {missing}"


@pytest.mark.parametrize(
    "lab",
    [pytest.param(p, id=p.name, marks=pytest.mark.xfail(strict=True, reason="raw equation labels still to fix"))
     if p.name in STILL_RAW else pytest.param(p, id=p.name) for p in LABS])
def test_labs_cite_equations_the_book_defines_with_the_eq_role(lab):
    labels = _defined_labels()
    undefined, raw = [], []
    for index, text in _markdown_cells(lab):
        undefined += [(index, label) for label in ROLE.findall(text) if label not in labels]
        raw += [(index, label) for label in _raw_labels(text)]
    assert undefined == [], f"{lab.name} cites equations the book does not define (cell, label): {undefined}"
    assert raw == [], (f"{lab.name} writes equation labels as raw text (cell, label): {raw}; "
                       "write {eq}`label` so that the book shows the equation's number and a link")

"""Repository rules: clean notebooks, every lab in the table of contents, one repository URL,
and pyproject.toml and environment.yml naming the same packages."""
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted((ROOT / "labs").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_there_are_labs():
    assert LABS and LABS[0].name.startswith("00_")


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: clear outputs before committing"
            assert cell.get("execution_count") is None, f"{path.name}: clear execution counts"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_notebook_is_in_toc(path):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"labs/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_colab_setup_cell_installs_from_the_configured_repository(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    notebook = json.loads(path.read_text())
    first_code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert '"google.colab" in sys.modules' in source, f"{path.name}: first code cell must be the Colab set-up"
    assert f"git+{url}" in source, f"{path.name}: the set-up cell must install from {url}"


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {_name(r) for r in pip_section} == wanted


def test_the_course_packages_are_all_required():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    names |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    for package in ("jupyter-book", "torch", "transformers", "trl", "matplotlib", "ipywidgets",
                    "nbval", "datasets"):
        assert package in names


def test_torch_is_a_floor_and_the_local_setup_pins_the_cpu_wheel():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if _name(r) == "torch")
    assert ">=" in torch_req and "==" not in torch_req
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_every_equation_named_in_the_package_is_defined_in_the_book():
    import re
    code = " ".join(p.read_text() for p in (ROOT / "rlhf_minimal").rglob("*.py"))
    book = " ".join(p.read_text() for p in (ROOT / "book").glob("*.md"))
    named = set(re.findall(r"\beq-[a-z0-9-]+[a-z0-9]", code))
    assert named, "the docstrings should name the book's equations"
    missing = sorted(e for e in named if f"({e})" not in book)
    assert not missing, f"equations named in docstrings but not labelled in the book: {missing}"

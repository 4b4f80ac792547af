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


def _setup_cell(path) -> str:
    notebook = json.loads(path.read_text())
    return "".join(next(c for c in notebook["cells"] if c["cell_type"] == "code")["source"])


def test_every_lab_has_the_same_setup_cell():
    cells = {path.name: _setup_cell(path) for path in LABS}
    assert len(set(cells.values())) == 1, f"the labs' set-up cells differ: {sorted(cells)}"


def test_a_failed_install_says_what_to_check_and_how_to_install_from_a_copy(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "setup.py"
    script.write_text(_setup_cell(LABS[0]))
    env = {**os.environ, "RLHF_INSTALL_FROM": f"file://{tmp_path}/no-such-copy"}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert run.returncode != 0
    assert "Traceback" in run.stderr and "CalledProcessError" not in run.stderr
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("RuntimeError: Could not install the course package from file://")
    assert "reaches the internet" in message and 'os.environ["RLHF_INSTALL_FROM"]' in message
    assert "no-such-copy" in run.stdout  # pip's own message is shown above it


def test_the_setup_cell_can_keep_the_stage_cache_on_drive():
    source = _setup_cell(LABS[0])
    assert "KEEP_STAGES_ON_DRIVE = False" in source  # off unless asked for: mounting asks permission
    assert 'os.environ["RLHF_CACHE"] = "/content/drive/' in source
    assert "KEEP_STAGES_ON_DRIVE" in (ROOT / "book" / "preface.md").read_text()
    lab0 = json.loads(LABS[0].read_text())
    assert any("KEEP_STAGES_ON_DRIVE" in "".join(c["source"]) for c in lab0["cells"]
               if c["cell_type"] == "markdown")


def test_a_plain_install_ships_every_subpackage():
    """Colab's set-up cell installs a copy, not an editable checkout: only the packages listed in
    pyproject.toml reach it."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rlhf_minimal").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


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


TEXT_SOURCES = sorted([*(ROOT / "book").glob("*.md"), ROOT / "README.md", *LABS])


@pytest.mark.parametrize("path", TEXT_SOURCES, ids=lambda p: p.name)
def test_no_control_characters_in_the_sources(path):
    """A backslash swallowed on the way into a file turns LaTeX's \\tilde, \\frac or \\beta into a
    tab, a form feed or a backspace; the page then shows broken maths without any build error."""
    text = path.read_text()
    if path.suffix == ".ipynb":  # the cells' text, after JSON has decoded its escapes
        text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    for number, line in enumerate(text.split("\n"), 1):
        bad = [hex(ord(c)) for c in line if ord(c) < 32]
        assert not bad, f"{path.name}:{number}: control characters {bad} in {line.strip()[:60]!r}"

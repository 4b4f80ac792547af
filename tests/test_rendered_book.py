"""The built book as a reader sees it (scripts/check_rendered_book.py in headless Chromium), and
the colour palette of the course's plots."""
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_rendered_book", ROOT / "scripts" / "check_rendered_book.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

# Okabe & Ito (2008), "Color Universal Design": orange, sky blue, bluish green, yellow, blue,
# vermillion, reddish purple, black.
OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else (shutil.which(name) or name)


def built_book(tmp_path_factory) -> Path:
    """_build/test-html as `make test` builds it; built here, the same way, when it is missing."""
    html = ROOT / "_build" / "test-html"
    if (html / "index.html").is_file():
        return html
    html = tmp_path_factory.mktemp("test-html")
    for command in ([_tool("jupyter-book"), "config", "sphinx", "."],
                    [_tool("sphinx-build"), "-q", "-b", "html", "-W", "--keep-going",
                     "-D", "nb_execution_mode=off", ".", str(html)]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command[:3])} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return html


def test_every_page_renders_cleanly_in_chromium(tmp_path_factory):
    if check.chromium_binary() is None:
        pytest.fail("chromium is not installed; the rendered-book check needs it: apt-get install chromium")
    html = built_book(tmp_path_factory)
    lines = []
    results = check.check_book(html, report=lines.append)
    failed = [page for page, problems in results.items() if problems and page != "rlhf_minimal/plots.py"]
    assert not failed, "pages with problems:\n" + "\n".join(
        line for line in lines if not line.endswith(": OK") and not line.startswith("rlhf_minimal/"))


def test_plots_palette_is_okabe_ito():
    from rlhf_minimal.plots import OKABE_ITO as palette

    assert len(palette) == len(set(palette)) == 8
    assert {colour.upper() for colour in palette} == OKABE_ITO


def test_plots_hard_code_no_other_colours():
    problems = check.palette_problems(ROOT / "rlhf_minimal" / "plots.py")
    assert not problems, "colours outside the Okabe-Ito palette in rlhf_minimal/plots.py:\n" + "\n".join(problems)


def test_palette_check_finds_other_colours(tmp_path):
    source = tmp_path / "plots.py"
    source.write_text('"""Docstrings may say #123456."""\n'
                      "def f(ax):\n"
                      '    ax.plot([0], [1], "r--")\n'
                      '    ax.plot([0], [1], "o-", color="#0072B2", label="gold")\n'
                      '    ax.bar([0], [1], color=["tab:blue", "#123abc"], edgecolor="white")\n'
                      '    ax.axhline(0, color="grey")\n')
    found = check.palette_problems(source)
    assert [line.split(":")[1] for line in found] == ["3", "5", "5"], found


def test_page_checks_find_problems(tmp_path):
    page = """<html><head><link rel="prev" href="missing.html"></head><body>
      <div class="system-message">System Message: ERROR/3 (x.md, line 3) Unknown directive type "figgure".</div>
      <img src="../_images/ok.png" data-natural-width="10">
      <img alt="x.png" src="../_images/ok.png" data-natural-width="10">
      <img alt="a plot" src="../_images/missing.png">
      <img alt="a plot" src="../_images/ok.png" data-natural-width="10">
      <a href="#intro" id="intro">fine</a> <a href="#nowhere">anchor</a>
      <a href="https://colab.research.google.com/github/rlhf-minimal/rlhf-course/blob/main/labs/04_reward_model.ipynb">C</a>
    </body></html>"""
    (tmp_path / "book").mkdir()
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "ok.png").write_bytes(b"png")
    (tmp_path / "book" / "x.html").write_text(page)
    soup = check.BeautifulSoup(page, "html.parser")
    with check.BookServer(tmp_path) as server:
        url = server.base + "book/x.html"
        images = check.image_problems(soup, url, server)
        links = check.link_problems(soup, url, server)
    assert images == ["image without alt text: ../_images/ok.png",
                      "image whose alt text is a file name: ../_images/ok.png",
                      "image does not load (HTTP 404): ../_images/missing.png"]
    assert links == ["broken link: missing.html", "link to a missing anchor: #nowhere"]
    assert any("Colab link to the wrong notebook" in p for p in check.colab_problems(soup, "labs/05_ppo"))
    assert check.colab_problems(soup, "labs/04_reward_model") == []
    errors = check.error_blocks(soup)
    assert errors[0].startswith("error block: 'System Message: ERROR/3") and errors[1].startswith("error text:")


def test_math_check_finds_raw_tex():
    from bs4 import BeautifulSoup

    raw = BeautifulSoup('<p><span class="math notranslate nohighlight">\\(\\beta\\)</span></p>', "html.parser")
    typeset = BeautifulSoup('<p><span class="math notranslate nohighlight"><mjx-container>b</mjx-container>'
                            '</span></p>', "html.parser")
    assert check.math_problems(typeset) == []
    (problem,) = check.math_problems(raw)
    assert "1 formula(s) not typeset" in problem and "MathJax" in problem

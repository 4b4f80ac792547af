"""Check the built book as a reader sees it: every page loaded in headless Chromium.

    python scripts/check_rendered_book.py [HTML_DIR] [--jobs N] [--screenshots DIR PAGE ...]

HTML_DIR (default _build/test-html) is served on a free localhost port. Every page of the table
of contents, plus search.html and genindex.html, is loaded in headless Chromium (one browser,
driven over the DevTools protocol, N tabs at a time), and the DOM after its JavaScript ran is
checked for:

- Sphinx or docutils error blocks (system messages, "problematic" nodes, "Unknown directive",
  WARNING or ERROR/3 text) and Python tracebacks in cell outputs;
- images without alt text (or with a file name for one), or whose file does not load (HTTP
  status from the local server, and naturalWidth in the browser);
- links, stylesheets and scripts pointing to files or anchors of the book that do not exist;
- on each lab page, a Colab launch link to exactly that notebook in the repository that
  _config.yml names;
- formulas left as raw TeX (MathJax, served with the book, did not typeset them);
- on the search page, results for "reward" that link to chapter pages.

It also checks that rlhf_minimal/plots.py draws only with the Okabe-Ito palette (black, white
and grey being neutral are allowed too). One line per
page (OK or the problems); the exit status is 1 when anything failed. --screenshots DIR PAGE ...
saves PNGs (1280x2000) of the named pages, e.g. book/05_ppo, into DIR.
"""
from __future__ import annotations

import argparse
import ast
import base64
import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]

OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
# Neutrals carry no hue, so they stay safe under colour blindness: reference lines and bar edges.
NEUTRAL_COLOURS = {"black", "white", "grey", "gray", "k", "w"}

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--window-size=1280,2000",
]
SEARCH_QUERY = "reward"

ERROR_TEXT = re.compile(r"Unknown directive|Unknown interpreted text role|System Message"
                        r"|\b(?:WARNING|ERROR|SEVERE)/\d|\bWARNING\b|Traceback \(most recent call last\)")


# ---------------------------------------------------------------------------------------------
# What to check


def toc_pages(toc_file: Path = ROOT / "_toc.yml") -> list[str]:
    """Every file of the table of contents, in reading order, without suffix (book/intro, ...)."""
    files = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    files.append(re.sub(r"\.(md|ipynb)$", "", str(node[key])))
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc_file.read_text()))
    return list(dict.fromkeys(files))


def colab_link(page: str, config_file: Path = ROOT / "_config.yml") -> str:
    """The Colab URL of a lab notebook in the repository that _config.yml names."""
    config = yaml.safe_load(config_file.read_text())
    repo = config["repository"]
    owner_name = urlsplit(repo["url"]).path.strip("/")
    prefix = str(repo.get("path_to_book") or "").strip("/")
    notebook = f"{prefix}/{page}.ipynb" if prefix else f"{page}.ipynb"
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{owner_name}/blob/{repo.get('branch', 'main')}/{notebook}"


# ---------------------------------------------------------------------------------------------
# Serving the book and driving Chromium


class BookServer:
    """Serves a folder on a free localhost port from a thread; use as a context manager."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __enter__(self):
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def status(self, url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the browser dropping a connection it no longer needs is not a problem of the book


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class Chromium:
    """One headless Chromium for the whole check, driven over the DevTools protocol: a process
    per page costs seconds of start-up each, a tab costs milliseconds. Use as a context manager."""

    def __enter__(self):
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("chromium is not installed: apt-get install chromium")
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True)
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}", "--remote-debugging-port=0",
             "about:blank"], stdout=self.log, stderr=self.log, start_new_session=True)
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.log.seek(0)
                output = self.log.read()[-2000:]
                self.__exit__()
                raise RuntimeError(f"headless Chromium did not start:\n{output}")
            time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{port_file.read_text().split()[0]}"
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        try:  # the browser's own helper processes, in the process group it was started in
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()
        self.profile.cleanup()

    def open(self, url: str, width: int = 1280, height: int = 2000, wait_for: str | None = None,
             timeout: float = 30) -> "Tab":
        """A new tab showing url once its load event fired (and, if given, the JavaScript
        expression wait_for is true); close it with .close()."""
        request = urllib.request.Request(f"{self.endpoint}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            target = json.load(response)
        tab = Tab(self, target["id"], target["webSocketDebuggerUrl"])
        try:
            tab.call("Page.enable")
            tab.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                     deviceScaleFactor=1, mobile=False)
            tab.call("Page.navigate", url=url)
            tab.wait_event("Page.loadEventFired", timeout)
            deadline = time.monotonic() + timeout
            while wait_for and not tab.evaluate(wait_for) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.3)  # let the scripts that run on load finish
        except BaseException:
            tab.close()
            raise
        return tab


class Tab:
    """One page in the browser, spoken to over a WebSocket (a minimal client: text frames only)."""

    def __init__(self, browser: Chromium, target_id: str, ws_url: str):
        self.browser, self.target_id, self.last_id, self.events = browser, target_id, 0, []
        parts = urlsplit(ws_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.stream = self.sock.makefile("rb")
        if b" 101 " not in self.stream.readline():
            raise RuntimeError("Chromium refused the DevTools connection")
        while self.stream.readline() not in (b"\r\n", b""):
            pass

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        self._send(json.dumps({"id": self.last_id, "method": method, "params": params}).encode())
        while True:
            message = self._receive()
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_event(self, method: str, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            while not any(event.get("method") == method for event in self.events):
                self.events.append(self._receive())
        except socket.timeout:
            raise TimeoutError(f"no {method} within {timeout:.0f} s") from None
        finally:
            self.sock.settimeout(60)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, png: Path) -> None:
        png.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.sock.close()
        with urllib.request.urlopen(f"{self.browser.endpoint}/json/close/{self.target_id}", timeout=30):
            pass

    def _send(self, data: bytes) -> None:
        n, mask = len(data), os.urandom(4)
        length = bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536
                                                   else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        self.sock.sendall(b"\x81" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _receive(self) -> dict:
        chunks = []
        while True:
            head = self.stream.read(2)
            if len(head) < 2 or head[0] & 0x0F == 0x8:
                raise ConnectionError("Chromium closed the DevTools connection")
            n = head[1] & 0x7F
            if n >= 126:
                n = int.from_bytes(self.stream.read(2 if n == 126 else 8), "big")
            chunks.append(self.stream.read(n))
            if head[0] & 0x80:  # the last frame of a message
                return json.loads(b"".join(chunks))


# Run in the page after it loaded: each image records its natural width, then the DOM is returned.
RENDERED_DOM = ("document.querySelectorAll('img').forEach(img => img.setAttribute("
                "'data-natural-width', img.complete ? img.naturalWidth : 0)); document.documentElement.outerHTML")
SEARCH_DONE = "!!(document.querySelector('#search-results .search-summary') || {}).textContent"
# MathJax typesets after the load event: wait until every formula holds its rendering (or time out).
MATH_DONE = ("Array.from(document.querySelectorAll('.math')).every("
             "el => el.querySelector('mjx-container') || el.tagName === 'MJX-CONTAINER')")


# ---------------------------------------------------------------------------------------------
# The checks on one rendered page


def error_blocks(soup: BeautifulSoup) -> list[str]:
    problems = [f"error block: {' '.join(el.get_text(' ', strip=True).split())[:120]!r}"
                for el in soup.select(".system-message, .problematic")]
    for el in soup(["script", "style"]):
        el.decompose()
    for line in soup.get_text("\n").splitlines():
        if ERROR_TEXT.search(line):
            problems.append(f"error text: {line.strip()[:120]!r}")
    return problems


def math_problems(soup: BeautifulSoup) -> list[str]:
    """Formulas still in raw TeX after the page ran: MathJax did not load or failed."""
    raw = [el for el in soup.select(".math") if el.name != "mjx-container" and not el.select("mjx-container")]
    if not raw:
        return []
    return [f"{len(raw)} formula(s) not typeset, e.g. {' '.join(raw[0].get_text(' ', strip=True).split())[:60]!r}: "
            "MathJax did not run (it is served from _static/mathjax by sphinx-mathjax-offline)"]


def image_problems(soup: BeautifulSoup, page_url: str, server: BookServer) -> list[str]:
    problems = []
    for img in soup.find_all("img"):
        src = img.get("src", "")
        alt = img.get("alt", "").strip()
        if not alt:
            problems.append(f"image without alt text: {src}")
        elif re.fullmatch(r"\S+\.(png|jpe?g|gif|svg|webp)", alt, re.IGNORECASE):
            problems.append(f"image whose alt text is a file name: {src}")
        if src.startswith("data:"):
            continue
        url = urljoin(page_url, src)
        if not url.startswith(server.base):
            problems.append(f"image loads from outside the book: {src}")
        elif (status := server.status(url)) != 200:
            problems.append(f"image does not load (HTTP {status}): {src}")
        elif img.get("data-natural-width") in (None, "0"):
            problems.append(f"image has no pixels in the browser: {src}")
    return problems


@functools.lru_cache(maxsize=None)
def _anchors(html_file: Path) -> frozenset[str]:
    text = html_file.read_text(errors="replace")
    return frozenset(re.findall(r'\bid="([^"]+)"', text)) | frozenset(re.findall(r'\bname="([^"]+)"', text))


def link_problems(soup: BeautifulSoup, page_url: str, server: BookServer) -> list[str]:
    """Links (and the page's own stylesheets and scripts) to files of the book that do not exist,
    or to anchors that their page does not have."""
    problems = []
    for el in soup.select("a[href], link[href], script[src]"):
        href = el.get("href") or el.get("src")
        url = urljoin(page_url, href)
        if not url.startswith(server.base):
            continue
        parts = urlsplit(url)
        target = server.folder / unquote(parts.path[1:])
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link: {href}")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _anchors(target):
            problems.append(f"link to a missing anchor: {href}")
    return sorted(set(problems))


def colab_problems(soup: BeautifulSoup, page: str) -> list[str]:
    expected = colab_link(page)
    colab_root = expected.split("/github/")[0]
    links = {a["href"] for a in soup.find_all("a", href=True) if a["href"].startswith(colab_root)}
    if not links:
        return [f"no Colab launch link (expected {expected})"]
    if not (ROOT / f"{page}.ipynb").is_file():
        return [f"the Colab link's notebook {page}.ipynb is not in the repository"]
    return [f"Colab link to the wrong notebook: {link}" for link in sorted(links - {expected})]


def search_problems(soup: BeautifulSoup, chapters: set[str]) -> list[str]:
    results = [a["href"].split("?")[0].split("#")[0] for a in soup.select("ul.search li a[href]")]
    if not results:
        return [f"search for {SEARCH_QUERY!r} found nothing"]
    if not any(href.removesuffix(".html") in chapters for href in results):
        return [f"search for {SEARCH_QUERY!r} links to no chapter: {results[:5]}"]
    return []


def check_page(page: str, server: BookServer, browser: Chromium, chapters: set[str]) -> list[str]:
    """Load one page (book/05_ppo, search, ...) in Chromium and return its problems."""
    if not (server.folder / f"{page}.html").is_file():
        return [f"{page}.html was not built"]
    url = server.base + f"{page}.html" + (f"?q={SEARCH_QUERY}" if page == "search" else "")
    try:
        tab = browser.open(url, wait_for=SEARCH_DONE if page == "search" else MATH_DONE)
        try:
            soup = BeautifulSoup(tab.evaluate(RENDERED_DOM), "html.parser")
        finally:
            tab.close()
    except (TimeoutError, OSError, RuntimeError) as error:
        return [f"the page did not load in Chromium: {error}"]
    problems = image_problems(soup, url, server) + link_problems(soup, url, server) + math_problems(soup)
    if page.startswith("labs/"):
        problems += colab_problems(soup, page)
    if page == "search":
        problems += search_problems(soup, chapters)
    return problems + error_blocks(soup)


# ---------------------------------------------------------------------------------------------
# The figures' palette


COLOUR_ARGUMENTS = {"color", "colour", "colors", "c", "facecolor", "edgecolor", "fc", "ec",
                    "markerfacecolor", "markeredgecolor", "mfc", "mec", "cmap"}
PLOT_CALLS = {"plot", "semilogx", "semilogy", "loglog", "errorbar"}
HEX_COLOUR = re.compile(r"#(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{3})\b")
FORMAT_STRING = re.compile(r"[-.:,ov^<>12348spP*hH+xXDd|_]*([bgrcmykw])[-.:,ov^<>12348spP*hH+xXDd|_]*")


def palette_problems(source_file: Path = ROOT / "rlhf_minimal" / "plots.py") -> list[str]:
    """Colours written into the plotting code that are neither Okabe-Ito nor neutral, one
    'file:line: source line (colour)' each. Looks for hex codes in any string but docstrings,
    and for named colours ('red', 'C1', 'tab:blue', a colour map) given to a colour argument or
    variable, or in a plot format string such as 'r--'."""
    from matplotlib.colors import CSS4_COLORS

    source = source_file.read_text()
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}

    def strings(node):
        return [n for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]

    found = set()  # (line, colour)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found |= {(node.lineno, colour) for colour in HEX_COLOUR.findall(node.value)}
        colour_values = []
        if isinstance(node, ast.keyword) and node.arg in COLOUR_ARGUMENTS:
            colour_values = strings(node.value)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and "colo" in t.id.lower()
                                                  for t in node.targets):
            colour_values = strings(node.value)
        for const in colour_values:
            if (const.value.lower() in CSS4_COLORS or re.fullmatch(r"C\d+|(tab|xkcd):.+", const.value)
                    or (isinstance(node, ast.keyword) and node.arg == "cmap")):
                found.add((const.lineno, const.value))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PLOT_CALLS:
            for const in node.args:
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    if match := FORMAT_STRING.fullmatch(const.value):
                        found.add((const.lineno, match.group(1)))
    palette = {c.lower() for c in OKABE_ITO}
    lines = source.splitlines()
    return [f"{source_file.name}:{line}: {lines[line - 1].strip()}  (colour {colour!r} is not in the Okabe-Ito palette)"
            for line, colour in sorted(found)
            if colour.lower() not in palette | NEUTRAL_COLOURS]


# ---------------------------------------------------------------------------------------------


def take_screenshot(browser: Chromium, url: str, png: Path) -> None:
    tab = browser.open(url)
    try:
        tab.screenshot(png)
    finally:
        tab.close()


def check_book(html_dir: Path, jobs: int = 3, screenshots: tuple[Path, list[str]] | None = None,
               report=print) -> dict[str, list[str]]:
    """Check every page and the palette; report one line each; return {name: problems}."""
    html_dir = Path(html_dir).resolve()
    pages = toc_pages() + ["search", "genindex"]
    chapters = {p for p in pages if p.startswith("book/")}
    results = {}
    with BookServer(html_dir) as server, Chromium() as browser, ThreadPoolExecutor(jobs) as pool:
        futures = {page: pool.submit(check_page, page, server, browser, chapters) for page in pages}
        for page, future in futures.items():
            results[page] = future.result()
            name = f"{page}.html" + (f"?q={SEARCH_QUERY}" if page == "search" else "")
            report(f"{name}: " + ("OK" if not results[page] else "; ".join(results[page])))
        if screenshots:
            folder, shots = screenshots
            folder.mkdir(parents=True, exist_ok=True)
            for page in (shot.removesuffix(".html") for shot in shots):
                png = folder / f"{page.replace('/', '_')}.png"
                try:
                    take_screenshot(browser, server.base + f"{page}.html", png.resolve())
                    report(f"screenshot of {page}.html: {png}")
                except (TimeoutError, OSError, RuntimeError) as error:
                    results[f"screenshot of {page}"] = [f"no screenshot: {error}"]
                    report(f"screenshot of {page}.html: FAILED ({error})")
    results["rlhf_minimal/plots.py"] = palette_problems()
    report("rlhf_minimal/plots.py palette: " + ("OK" if not results["rlhf_minimal/plots.py"]
                                                   else "; ".join(results["rlhf_minimal/plots.py"])))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", nargs="?", default=str(ROOT / "_build" / "test-html"),
                        help="the built HTML (default _build/test-html)")
    parser.add_argument("--jobs", type=int, default=3,
                        help="pages loaded at once, as tabs of one browser (default 3)")
    parser.add_argument("--screenshots", nargs="+", metavar=("DIR", "PAGE"),
                        help="save screenshots of these pages (e.g. book/05_ppo) into DIR")
    args = parser.parse_args(argv)
    if chromium_binary() is None:
        print("chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 2
    html_dir = Path(args.html_dir)
    if not (html_dir / "index.html").is_file():
        print(f"no built book in {html_dir}: build it first (make test, or make check-book)", file=sys.stderr)
        return 2
    shots = (Path(args.screenshots[0]), args.screenshots[1:]) if args.screenshots else None
    results = check_book(html_dir, jobs=args.jobs, screenshots=shots)
    failed = [page for page, problems in results.items() if problems]
    pages = len(toc_pages()) + 2
    print(f"{pages} pages and the palette checked: {len(failed)} with problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

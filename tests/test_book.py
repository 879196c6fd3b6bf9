"""The book: a clean offline build, then every chapter opened in a real browser.

The build runs once per test session into a temporary folder, from scratch
(``--all``). It does not execute the chapters: nbval (pytest.ini) has already
executed each of them and compared every output with the committed one, so the
build renders the committed outputs, and `test_book_pages_show_the_committed_outputs`
proves the pages show exactly those. (`make book` builds the same pages with every
chapter executed, and fails on a cell error: `execute.raise_on_error` in _config.yml.)
The browser test needs Chromium (Debian package ``chromium``); without it the
test is skipped locally and fails under ``CI=true``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import nbformat
import pytest
import yaml

from browser import Browser, chromium

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
PARTS = yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]
PAGES = [entry["file"] for part in PARTS for entry in part["chapters"]]
# chapters have an exercise and figures; appendices (a part whose caption starts with "Appendi") need not
CHAPTERS = [entry["file"] for part in PARTS if not part["caption"].startswith("Appendi") for entry in part["chapters"]]
# the page of chapter 4 around its scatter and gather figure (the cell named fig-ch04-scatter-gather)
SCREENSHOT = ROOT / "_build" / "screenshot-ch04-scatter-gather.png"


# the tests that read the built book share its session fixture: one xdist worker runs them all
pytestmark = [pytestmark, pytest.mark.xdist_group(name="built-book")]


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    assert jb.exists(), f"jupyter-book not installed next to {sys.executable}; run `make test`"
    # the book's own configuration, with the committed outputs rendered instead of executed again
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "force" and config["execute"]["raise_on_error"] is True
    config["execute"]["execute_notebooks"] = "off"
    # Jupyter Book finds a local extension relative to the configuration file, which this copy moves
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in config["sphinx"].get("local_extensions", {}).items()}
    (out / "_config.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(jb), "build", str(ROOT), "--all", "-W", "--keep-going", "--path-output", str(out),
         "--config", str(out / "_config.yml")],
        capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, "book build failed:\n" + result.stdout[-5000:] + result.stderr[-5000:]
    return out / "_build" / "html"


def test_book_builds_every_chapter_with_offline_mathjax(built_book):
    assert (built_book / "index.html").exists()
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").exists()
    for chapter in PAGES:
        page = (built_book / f"{chapter}.html").read_text()
        # MathJax comes from the built site, never from a CDN
        assert "_static/mathjax/tex-chtml.js" in page, chapter
        assert not re.search(r'<script[^>]+src="https?://', page), f"{chapter} loads a remote script"
        # no Jupyter widget state (it makes the page fetch scripts from a CDN)
        assert "application/vnd.jupyter.widget" not in page, chapter
        # executed, not a traceback
        assert "Traceback (most recent call last)" not in page, chapter
    for folder in ("solutions", "exercises", ".venv", "tests"):
        assert not (built_book / folder).exists(), f"{folder}/ was built into the book"


def test_book_chapters_link_their_exercise_notebook(built_book):
    for chapter in CHAPTERS:
        page = (built_book / f"{chapter}.html").read_text()
        links = re.findall(r'href="([^"]*_downloads/[^"]+\.zip)"', page)
        assert links, f"{chapter} has no download link to its exercise"
        for link in links:
            assert (built_book / chapter).parent.joinpath(link).resolve().exists(), link


class _Text(HTMLParser):
    """The text of a page, and the number of images its cell outputs show."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.output_images = 0
        self._inside_output = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div" and "cell_output" in classes:
            self._inside_output += 1
        if tag == "img" and self._inside_output:
            self.output_images += 1

    def handle_data(self, data):
        self.parts.append(data)


def _committed_outputs(chapter: str) -> tuple[list[str], int]:
    """The committed printed lines of a chapter (stdout and text results) and how many figures it holds."""
    nb = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
    lines, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data or "image/svg+xml" in data:
                images += 1
                continue
            text = output.get("text") or data.get("text/plain") or ""
            lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines, images


@pytest.mark.parametrize("chapter", [page for page in PAGES if (ROOT / f"{page}.ipynb").exists()])
def test_book_every_figure_has_alt_text_and_a_caption(chapter):
    nb = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if not any("image/png" in output.get("data", {}) for output in cell.get("outputs", [])):
            continue
        mystnb = cell.metadata.get("mystnb", {})
        assert str(mystnb.get("image", {}).get("alt", "")).strip(), f"{chapter} cell {index}: a figure without alt text"
        assert str(mystnb.get("figure", {}).get("caption", "")).strip(), \
            f"{chapter} cell {index}: a figure without a caption"


@pytest.mark.parametrize("chapter", [page for page in PAGES if (ROOT / f"{page}.ipynb").exists()])
def test_book_pages_show_the_committed_outputs(chapter, built_book):
    # the test build renders what is committed (nbval checked it is current): every printed line and
    # every figure of the notebook must be on the page, so a build that executed nothing or dropped
    # outputs fails here
    page = _Text()
    page.feed((built_book / f"{chapter}.html").read_text())
    text = " ".join(" ".join(page.parts).split())
    lines, images = _committed_outputs(chapter)
    assert lines, f"{chapter} has no committed output"
    missing = [line for line in lines if " ".join(line.split()) not in text]
    assert not missing, f"{chapter}: committed outputs not on the page: {missing[:5]}"
    assert page.output_images == images, f"{chapter}: {images} figures committed, {page.output_images} on the page"


class _StrayDollars(HTMLParser):
    """Text outside code and math that still holds a `$`: math MyST did not parse.

    A `$$` block that follows a text line without a blank line (easy inside a
    list item) is read as inline text, and the reader sees raw dollars.
    """

    VOID = {"br", "img", "meta", "link", "input", "hr", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, list[str]]] = []
        self.hits: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append((tag, (dict(attrs).get("class") or "").split()))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        inside_code_or_math = any(
            tag in ("pre", "code", "script", "style", "title") or "math" in classes or "highlight" in classes
            for tag, classes in self.stack)
        if "$" in data and not inside_code_or_math:
            self.hits.append(data.strip()[:120])


def test_book_math_is_all_parsed(built_book):
    for chapter in PAGES:
        parser = _StrayDollars()
        parser.feed((built_book / f"{chapter}.html").read_text())
        assert not parser.hits, f"{chapter}: raw dollar signs in the text (unparsed math): {parser.hits}"


class _Page(HTMLParser):
    """Collects what the test checks: math containers, images, remote resources."""

    def __init__(self) -> None:
        super().__init__()
        self.math = 0
        self.images: list[dict[str, str]] = []
        self.remote: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "mjx-container":
            self.math += 1
        if tag == "img":
            self.images.append(a)
        src = a.get("src", "") if tag in ("script", "img", "iframe") else ""
        if tag == "link" and "stylesheet" in a.get("rel", ""):
            src = a.get("href", "")
        if src.startswith(("http://", "https://", "//")) and "127.0.0.1" not in src:
            self.remote.append(src)


@pytest.fixture(scope="session")
def browser() -> str:
    return chromium()


@pytest.fixture(scope="session")
def served_book(built_book):
    """Serve the built book on 127.0.0.1 and record every request's status."""
    log: list[tuple[str, int]] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            log.append((urlparse(self.path).path, int(code) if str(code).isdigit() else 0))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(built_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", log
    server.shutdown()


@pytest.fixture(scope="session")
def pages_in_browser(browser, served_book, tmp_path_factory):
    """One Chromium for every page of the book: {page: its DOM once loaded and typeset}."""
    base, _ = served_book
    with Browser(browser, tmp_path_factory.mktemp("chromium") / "profile") as chromium:
        doms = {page: chromium.dom(urljoin(base, f"{page}.html")) for page in PAGES}
        SCREENSHOT.parent.mkdir(exist_ok=True)
        chromium.screenshot(urljoin(base, "book/ch04-input-gradients.html"), SCREENSHOT, 1280, 1600,
                           around="#fig-ch04-scatter-gather")
    return doms


@pytest.mark.parametrize("chapter", PAGES)
def test_book_chapter_in_browser_typesets_math_and_loads_figures(chapter, pages_in_browser, served_book):
    base, log = served_book
    url = urljoin(base, f"{chapter}.html")
    page = _Page()
    page.feed(pages_in_browser[chapter])
    assert page.math > 0, f"{chapter}: no <mjx-container> in the DOM, MathJax did not typeset"
    figures = [img for img in page.images if "_images/" in img.get("src", "")]
    if chapter in CHAPTERS:
        assert figures, f"{chapter}: a chapter without a single figure"
    served: dict[str, set[int]] = {}
    for path, code in log:
        served.setdefault(path, set()).add(code)
    for img in figures:
        path = urlparse(urljoin(url, img["src"])).path
        assert 200 in served.get(path, set()), f"{chapter}: figure {img['src']} was not loaded ({served.get(path)})"
        assert img.get("alt", "").strip(), f"{chapter}: figure {img['src']} has no alt text"
    assert not page.remote, f"{chapter}: remote resources {page.remote}"


def test_book_screenshot_of_a_chapter(pages_in_browser):
    assert SCREENSHOT.stat().st_size > 10_000, "the screenshot is (nearly) empty"

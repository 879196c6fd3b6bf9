"""The book builds from the repository, offline, warnings as errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_book_builds_with_offline_mathjax(tmp_path):
    jb = Path(sys.executable).with_name("jupyter-book")
    assert jb.exists(), f"jupyter-book not installed next to {sys.executable}; run `make test`"
    result = subprocess.run(
        [str(jb), "build", str(ROOT), "--all", "-W", "--keep-going", "--path-output", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    intro = (html / "book" / "intro.html").read_text()
    # MathJax is served from the built site, never from a CDN
    assert "_static/mathjax/tex-chtml.js" in intro
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert "cdn.jsdelivr" not in intro and "https://cdn" not in intro
    # nothing from the excluded folders leaked into the book
    for folder in ("solutions", "exercises", ".venv", "tests"):
        assert not (html / folder).exists(), f"{folder}/ was built into the book"
    shutil.rmtree(tmp_path / "_build", ignore_errors=True)

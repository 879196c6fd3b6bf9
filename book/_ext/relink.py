"""Switch the book's exercise links from the bare notebooks to the zips of book/_ext/exercise_zips.py.

Run once, from anywhere, when nobody else is editing the chapters:

    .venv/bin/python book/_ext/relink.py            # rewrite
    .venv/bin/python book/_ext/relink.py --check    # only report what it would change; exit 1 if anything

It does three things, each only if it is not done yet (running it twice changes nothing):

1. In every chapter notebook of book/, rewrites the role
   ``{download}`Download the exercise notebook <../exercises/<name>/<name>.ipynb>` `` into
   ``{download}`Download the exercise (a zip: the notebook, the convlib it imports, set-up instructions) <_exercises/<name>.zip>` ``.
   Only that markdown cell's source changes (the notebook's JSON is edited as text, so its outputs, metadata
   and formatting stay byte for byte); the prose around the link is left to the chapters' authors.
2. Registers the extension in _config.yml (`sphinx: local_extensions: {exercise_zips: book/_ext}`), so that
   every build writes the zips into book/_exercises/ before the chapters are read.
3. Adapts tests/test_book.py: its test build writes a copy of _config.yml into a temporary folder, and Jupyter
   Book resolves `local_extensions` paths against the folder of the configuration file, so the copy gets the
   absolute path; the test of the chapters' download links looks for `.zip` links instead of `.ipynb`.

Then run `make test` (or at least `.venv/bin/python -m pytest -m book tests/test_book.py tests/test_downloads.py`)
and commit the chapters, _config.yml and tests/test_book.py together.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LINK_TEXT = "Download the exercise (a zip: the notebook, the convlib it imports, set-up instructions)"
# inside a notebook's JSON text: the role as the chapters write it today (any link text)
OLD_LINK = re.compile(r"\{download\}`([^`<]*?)\s*<\.\./exercises/([\w.-]+)/\2\.ipynb>`")

CONFIG_OLD = """sphinx:
  # MathJax is served from the built site so the book reads offline.
  extra_extensions:
    - sphinx-mathjax-offline
"""
CONFIG_NEW = CONFIG_OLD + """  # writes book/_exercises/<assignment>.zip when the build starts (book/_ext/exercise_zips.py): each
  # chapter links its exercise as a zip with convlib, requirements.txt and set-up instructions
  local_extensions:
    exercise_zips: book/_ext
"""

TEST_BOOK = [
    ('''    config["execute"]["execute_notebooks"] = "off"
''', '''    config["execute"]["execute_notebooks"] = "off"
    # Jupyter Book finds a local extension relative to the configuration file, which this copy moves
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in config["sphinx"].get("local_extensions", {}).items()}
'''),
    ('''        links = re.findall(r'href="([^"]*_downloads/[^"]+\\.ipynb)"', page)
''', '''        links = re.findall(r'href="([^"]*_downloads/[^"]+\\.zip)"', page)
'''),
]


def relink_chapter(text: str) -> tuple[str, list[str]]:
    """The chapter's JSON text with its exercise links pointing at the zips, and the assignments relinked."""
    names = []

    def new(match: re.Match) -> str:
        names.append(match[2])
        return f"{{download}}`{LINK_TEXT} <_exercises/{match[2]}.zip>`"

    return OLD_LINK.sub(new, text), names


def edits(root: Path) -> dict[Path, tuple[str, str]]:
    """{file: (old text, new text)} for every file the switch changes."""
    changed = {}
    for chapter in sorted((root / "book").glob("*.ipynb")):
        text = chapter.read_text(encoding="utf-8")
        new, names = relink_chapter(text)
        if names:
            changed[chapter] = (text, new)
    config = root / "_config.yml"
    text = config.read_text(encoding="utf-8")
    if "local_extensions" not in text:
        if CONFIG_OLD not in text:
            raise SystemExit(f"{config}: the `sphinx:` block changed; add by hand:\n{CONFIG_NEW}")
        changed[config] = (text, text.replace(CONFIG_OLD, CONFIG_NEW, 1))
    test_book = root / "tests" / "test_book.py"
    text = new = test_book.read_text(encoding="utf-8")
    for old, replacement in TEST_BOOK:
        if replacement not in new:
            if old not in new:
                raise SystemExit(f"{test_book}: cannot find the lines to change; change by hand:\n{old}->\n{replacement}")
            new = new.replace(old, replacement, 1)
    if new != text:
        changed[test_book] = (text, new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report what would change, change nothing")
    args = parser.parse_args(argv)
    changed = edits(ROOT)
    for path, (old, new) in changed.items():
        relinked = relink_chapter(old)[1] if path.suffix == ".ipynb" else []
        print(f"{'would change' if args.check else 'changed'} {path.relative_to(ROOT)}"
              + (f": {', '.join(relinked)}" if relinked else ""))
        if not args.check:
            path.write_text(new, encoding="utf-8")
    if not changed:
        print("nothing to change: the book already links the zips")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())

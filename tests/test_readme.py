"""The README's Python examples run, and say what the README claims they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.repo

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "the README's examples are gone"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # one namespace: later blocks build on earlier ones
    assert namespace["out"].shape == (2, 4, 4, 4)
    assert namespace["grad_x"].shape == namespace["x"].shape
    assert namespace["report"].problems == {"0.weight": "frozen"}

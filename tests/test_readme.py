"""The README's Python examples run as written (in order, as one session)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python examples"
    monkeypatch.chdir(tmp_path)  # the examples write files (a fingerprint)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)

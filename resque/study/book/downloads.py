"""Each page in the other format a reader may want: notebooks as MyST Markdown, the tutorial as a notebook.

The theme's download button gives a page in the format it was written in (an
executed notebook as ``.ipynb``, a Markdown page as ``.md``). :func:`assemble`
also writes the other one under ``book/_generated/downloads/``, and the page
links it:

- :func:`myst_from_notebook`: a notebook as a MyST Markdown notebook (the text
  format Jupyter Book and jupytext read; outputs are not kept, as in any text
  notebook);
- :func:`notebook_from_markdown`: a Markdown page with ```` ```python ```` blocks
  (the tutorial) as a notebook whose code cells are those blocks, for a class to
  open in Jupyter; MyST directives and roles become plain Markdown.

:func:`tutorial_blocks` and :func:`run_tutorial` run the tutorial's code as the
test suite does (``resque book tutorial`` prints how long it took).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["myst_from_notebook", "notebook_from_markdown", "run_tutorial", "tutorial_blocks"]

_FENCE = re.compile(r"^```python\n(.*?)^```\n", flags=re.S | re.M)
_CITE = re.compile(r"\s*\{cite(?::[a-z]+)?\}`[^`]*`")
_ROLE = re.compile(r"\{[a-z:-]+\}`([^`<]*?)\s*(?:<[^`>]*>)?`")
_DIRECTIVE = re.compile(r"^:{3,}\{[\w-]+\}\s*(.*)$")


def myst_from_notebook(notebook) -> str:
    """`notebook` as the text of a MyST Markdown notebook (cells in order, tags kept, outputs dropped)."""
    kernel = notebook.metadata.get("kernelspec", {})
    lines = ["---", "jupytext:", "  text_representation:", "    format_name: myst", "kernelspec:",
             f"  name: {kernel.get('name', 'python3')}", f"  display_name: {kernel.get('display_name', 'Python 3')}",
             "---", ""]
    for index, cell in enumerate(notebook.cells):
        source = cell.source.rstrip("\n")
        if cell.cell_type == "code":
            tags = cell.metadata.get("tags", [])
            lines += ["```{code-cell} ipython3"] + ([f":tags: [{', '.join(tags)}]", ""] if tags else [])
            lines += [source, "```", ""]
        else:
            if index and notebook.cells[index - 1].cell_type == "markdown":
                lines += ["+++", ""]
            lines += [source, ""]
    return "\n".join(lines)


def _plain_markdown(text: str) -> str:
    """MyST Markdown read by Jupyter: directives become bold titles, roles their text, options, citations and
    paragraphs about downloading this very page go."""
    text = "\n\n".join(p for p in text.split("\n\n") if "{download}" not in p)
    text = _CITE.sub("", text)
    out = []
    for line in text.split("\n"):
        directive = _DIRECTIVE.match(line)
        if directive:
            if directive.group(1):
                out.append(f"**{directive.group(1)}**\n")
            continue
        if re.match(r"^:{3,}\s*$", line) or re.match(r"^:[\w-]+:", line):
            continue
        out.append(_ROLE.sub(r"\1", line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def notebook_from_markdown(text: str):
    """A notebook from a Markdown page: each ```` ```python ```` block a code cell, the text between them Markdown."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    position = 0
    for block in _FENCE.finditer(text):
        prose = _plain_markdown(text[position:block.start()])
        if prose:
            notebook.cells.append(nbformat.v4.new_markdown_cell(prose))
        cell = nbformat.v4.new_code_cell(block.group(1).rstrip("\n"))
        if prose.endswith("**Solution**"):  # a solution stays folded until the student opens it
            cell.metadata["jupyter"] = {"source_hidden": True}
        notebook.cells.append(cell)
        position = block.end()
    rest = _plain_markdown(text[position:])
    if rest:
        notebook.cells.append(nbformat.v4.new_markdown_cell(rest))
    return notebook


def tutorial_blocks(path: str | os.PathLike) -> list[str]:
    """The ```` ```python ```` blocks of a Markdown page (the tutorial's code, its solutions included), in order."""
    return [block.group(1) for block in _FENCE.finditer(Path(path).read_text())]


@dataclass
class TutorialRun:
    """What :func:`run_tutorial` did: the seconds of each block, and the session's names afterwards."""

    seconds: list[float]
    namespace: dict

    @property
    def total(self) -> float:
        return float(sum(self.seconds))


def run_tutorial(path: str | os.PathLike, workdir: str | os.PathLike | None = None) -> TutorialRun:
    """Run the tutorial's blocks in order, as one Python session (in `workdir`, default the current folder)."""
    path = Path(path)
    blocks = tutorial_blocks(path)
    namespace: dict = {}
    seconds = []
    here = Path.cwd()
    try:
        if workdir is not None:
            os.chdir(workdir)
        for block in blocks:
            start = time.perf_counter()
            exec(compile(block, str(path), "exec"), namespace)  # the page's own code, as a reader runs it
            seconds.append(time.perf_counter() - start)
    finally:
        os.chdir(here)
    return TutorialRun(seconds, namespace)

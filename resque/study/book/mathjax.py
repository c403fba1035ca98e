"""MathJax 3 bundled into the book, so that math renders from file:// with no network."""

from __future__ import annotations

import shutil
from pathlib import Path

#: MathJax files the book needs: the combined TeX+MathML/CHTML component, its
#: fonts, and what it loads on demand (TeX extensions, menu, accessibility).
MATHJAX_PARTS = ["tex-mml-chtml.js", "output/chtml", "input/tex/extensions", "input/mml", "ui", "a11y", "adaptors"]
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


def _mathjax_source() -> Path | None:
    """The es5 folder of the MathJax 3 bundled by the `django-static-mathjax` package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / "tex-mml-chtml.js").is_file():
            return es5
    return None


def _install_mathjax(static: Path) -> str:
    """Put MathJax under ``static/mathjax``; return "bundled" or "cdn"."""
    target = static / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    source = _mathjax_source()
    if source is None:
        # Same file name as the bundled copy, so _config.yml needs no change:
        # a loader that fetches MathJax from its CDN (math needs the network then).
        (target / "tex-mml-chtml.js").write_text(
            "// django-static-mathjax was not installed when this book was built: load MathJax 3 from its CDN.\n"
            "(function () {\n"
            "  var script = document.createElement('script');\n"
            f"  script.src = '{MATHJAX_CDN}';\n"
            "  script.async = true;\n"
            "  document.head.appendChild(script);\n"
            "})();\n"
        )
        return "cdn"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        elif (source / part).is_file():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    return "bundled"

"""The built book as a reader sees it: every page opened in headless Chromium and checked.

:func:`check_book` opens each page of a built book (``_build/html``) from
``file://`` with the network switched off and reports, page by page, what a
reader would trip over:

- a page of the table of contents that is missing or does not finish loading;
- an absolute path of the building machine in the page (or in a notebook the book
  ships for download);
- math left untypeset (MathJax output missing, or a raw ``\\(`` in the text);
- an image that does not load;
- a code cell, once its "show code" toggle is open, wider than the text column
  (the reader would have to scroll sideways), and likewise a table.

The measurements are taken inside the browser by a small script added to a
temporary copy of each page (the build itself is never changed); it writes its
findings as JSON into the page, which ``chromium --dump-dom`` returns once the
page and MathJax are done. Screenshots of the front page and the results page
are written for a person to look at. Command line: ``resque book check``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BookError

__all__ = ["BROWSERS", "BookCheck", "PageCheck", "check_book", "find_browser", "toc_pages"]

#: Executables tried, in order, when no browser is named (Debian's package is ``chromium``).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: The reader's window (a laptop screen).
WINDOW = (1280, 900)

#: The pages photographed for a person: the front page and the results page.
SCREENSHOTS = {"front.png": "book/intro.html", "results.png": "book/_generated/analysis.html"}

_MARKER = "resque-browser-check"

# Runs in the page once it and MathJax have finished: opens every toggle, measures, writes JSON into the page.
_PROBE = """<script>
window.addEventListener('load', function () {
  function report() {
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
    var main = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    var box = main.getBoundingClientRect();
    var images = Array.prototype.slice.call(document.images);
    var wide = function (selector) {
      var found = [];
      main.querySelectorAll(selector).forEach(function (e) {
        if (e.closest('.cell_output')) return;  // code only: an output (a traceback) prints what it prints
        var right = e.getBoundingClientRect().left + e.scrollWidth;
        if (e.scrollWidth > e.clientWidth + 1 || right > box.right + 1)
          found.push(e.textContent.trim().split('\\n')[0].slice(0, 70));
      });
      return found;
    };
    // a table is too wide when it, its scrolling wrapper, or any of its cells reaches past the column
    var wideTables = function () {
      var found = [];
      main.querySelectorAll('table').forEach(function (t) {
        var wrapper = t.parentElement, over = t.getBoundingClientRect().right > box.right + 1
          || (wrapper && wrapper.scrollWidth > wrapper.clientWidth + 1);
        t.querySelectorAll('th, td').forEach(function (c) {
          if (c.getBoundingClientRect().right > box.right + 1 || c.scrollWidth > c.clientWidth + 1) over = true;
        });
        if (over) found.push(t.textContent.trim().split('\\n')[0].slice(0, 70));
      });
      return found;
    };
    var prose = main.cloneNode(true);
    prose.querySelectorAll('pre, code, script, style, .MathJax, mjx-container').forEach(function (e) { e.remove(); });
    var text = prose.textContent;
    var result = {
      title: document.title,
      column: Math.round(box.width),
      images: images.length,
      broken_images: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                           .map(function (i) { return i.getAttribute('src'); }),
      wide_code: wide('div.highlight pre'),
      wide_tables: wideTables(),
      raw_tables: Array.prototype.slice.call(main.querySelectorAll('p')).filter(function (p) {
        return /\\|\\s*[-—:]{3,}\\s*\\|/.test(p.textContent); }).map(function (p) { return p.textContent.slice(0, 70); }),
      math_spans: document.querySelectorAll('span.math, div.math').length,
      typeset: document.querySelectorAll('mjx-container').length,
      raw_math: (text.match(/\\\\\\(|\\\\\\[|\\$\\$/g) || []).length,
      words: text.split(/\\s+/).filter(Boolean).length
    };
    var out = document.createElement('script');
    out.type = 'application/json'; out.id = '%s';
    out.textContent = JSON.stringify(result);
    document.body.appendChild(out);
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(report, report);
  else report();
});
</script>
""" % _MARKER

# Folders of a machine that no reader's copy should mention (besides the build's own paths).
_MACHINE_PATH = re.compile(r"(?<![\w./-])(?:file://)?/(?:tmp|work|root|home|Users|var/folders|private/var)"
                           r"/[\w.+-]+(?:/[\w.+-]+)*")


@dataclass
class PageCheck:
    """What the browser found on one page (``page`` is relative to the HTML folder)."""

    page: str
    title: str = ""
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    wide_code: list[str] = field(default_factory=list)
    wide_tables: list[str] = field(default_factory=list)
    raw_tables: list[str] = field(default_factory=list)
    math_spans: int = 0
    typeset: int = 0
    raw_math: int = 0
    words: int = 0
    machine_paths: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def problems(self) -> list[str]:
        """Each problem in a sentence; empty when the page reads well."""
        found = [self.error] if self.error else []
        if not self.error and self.words == 0:
            found.append("the page has no text")
        found += [f"image does not load: {src}" for src in self.broken_images]
        found += [f"code cell wider than the text column: {line!r}" for line in self.wide_code]
        found += [f"table wider than the text column: {line!r}" for line in self.wide_tables]
        found += [f"Markdown table shown as text, not rendered: {line!r}" for line in self.raw_tables]
        if self.math_spans and not self.typeset:
            found.append(f"{self.math_spans} formulas not typeset (is MathJax bundled? see resque.study.book.mathjax)")
        if self.raw_math:
            found.append(f"{self.raw_math} raw math delimiters (\\( \\[ $$) left in the text")
        found += [f"path of the building machine: {path}" for path in self.machine_paths]
        return found


@dataclass
class BookCheck:
    """The whole book: one :class:`PageCheck` per page, the screenshots, and the shipped notebooks' paths."""

    html_dir: Path
    pages: list[PageCheck]
    screenshots: list[Path]
    notebook_paths: dict[str, list[str]] = field(default_factory=dict)
    notebooks_read: int = 0

    @property
    def problems(self) -> list[str]:
        """``page: problem`` for every problem of every page and shipped notebook."""
        found = [f"{page.page}: {problem}" for page in self.pages for problem in page.problems]
        found += [f"{name}: path of the building machine: {path}"
                  for name, paths in self.notebook_paths.items() for path in paths]
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A few lines for the terminal: pages, formulas, images, then each problem."""
        typeset = sum(page.typeset for page in self.pages)
        images = sum(page.images for page in self.pages)
        lines = [f"{len(self.pages)} pages opened in the browser: {typeset} formulas typeset, {images} images, "
                 f"{self.notebooks_read} shipped notebooks and text copies read; "
                 + ("no problem found." if self.ok else f"{len(self.problems)} problems:")]
        lines += [f"  {problem}" for problem in self.problems]
        lines += [f"  screenshot: {path}" for path in self.screenshots]
        return "\n".join(lines)


def find_browser(browser: str | os.PathLike | None = None) -> str | None:
    """The Chromium executable: `browser` if given (a path or a name on PATH), else the first of :data:`BROWSERS`."""
    if browser is not None:
        found = shutil.which(str(browser))
        return found if found else (str(browser) if Path(browser).is_file() else None)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def toc_pages(html_dir: str | os.PathLike) -> list[str]:
    """The pages of the table of contents, as the built navigation lists them (the root page first)."""
    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    if not index.exists():
        raise BookError(f"{html_dir} has no index.html: build the book first (resque book build), "
                        "or pass the folder it wrote (_build/html).")
    root = index
    redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', index.read_text(), flags=re.I)
    if redirect:
        root = (html_dir / redirect.group(1)).resolve()
    text = root.read_text()
    nav = re.search(r'<nav class="[^"]*bd-docs-nav.*?</nav>', text, flags=re.S)
    if nav is None:
        raise BookError(f"{root} has no table-of-contents navigation (<nav class=\"bd-docs-nav\">): this is not a "
                        "book built by resque book build (Jupyter Book 1, sphinx-book-theme), so its pages are unknown.")
    pages = [root.relative_to(html_dir.resolve()).as_posix()]
    for href in re.findall(r'<a class="reference internal" href="([^"#]+)', nav.group(0)):
        page = (root.parent / href).resolve().relative_to(html_dir.resolve()).as_posix()
        if page not in pages:
            pages.append(page)
    return pages


_ANSI = re.compile(r"(?:\x1b|\\u001b)\[[0-9;]*[A-Za-z]")  # colour codes, raw or JSON-escaped (tracebacks)


def _machine_paths_in(text: str, forbidden: list[str]) -> list[str]:
    text = _ANSI.sub(" ", text)
    text = re.sub(r'\\[nrt"]', " ", text)  # JSON's escapes (a notebook's text): a path may follow a "\n"
    found = sorted({match.group(0).rstrip(".") for match in _MACHINE_PATH.finditer(text)})
    return found + [path for path in forbidden if path in text]


def _open(browser: str, url: str, *, dump: bool, screenshot: Path | None = None, timeout: float = 90.0) -> str:
    """Chromium headless, offline, on one page: its DOM after scripts ran (dump) or a screenshot."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-extensions", "--no-first-run", "--allow-file-access-from-files",
               "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any request to the network fails
               "--hide-scrollbars", "--virtual-time-budget=20000", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    command += ["--dump-dom"] if dump else [f"--screenshot={screenshot}"]
    with tempfile.TemporaryDirectory(prefix="resque-chromium-") as profile:
        done = subprocess.run(command + [f"--user-data-dir={profile}", url], capture_output=True, text=True,
                              timeout=timeout)
    if done.returncode != 0 and not done.stdout:
        raise BookError(f"{browser} failed on {url} (exit {done.returncode}): "
                        + (done.stderr.strip().splitlines() or ["no message"])[-1])
    return done.stdout


def _check_page(browser: str, copy: Path, page: str, forbidden: list[str]) -> PageCheck:
    check = PageCheck(page)
    path = copy / page
    if not path.exists():
        check.error = "listed in the table of contents but not built"
        return check
    check.machine_paths = _machine_paths_in(path.read_text(errors="replace"), forbidden)
    try:
        dom = _open(browser, path.as_uri(), dump=True)
    except subprocess.TimeoutExpired:
        check.error = "the browser did not finish loading the page in 90 s"
        return check
    except BookError as error:
        check.error = str(error)
        return check
    found = re.search(rf'<script type="application/json" id="{_MARKER}">(.*?)</script>', dom, flags=re.S)
    if not found:
        check.error = "the page did not finish loading (its scripts never reported)"
        return check
    for key, value in json.loads(found.group(1)).items():
        setattr(check, key, value)
    return check


def check_book(html_dir: str | os.PathLike, *, browser: str | os.PathLike | None = None,
               screenshots_dir: str | os.PathLike | None = None, forbidden: list[str] | None = None,
               workers: int = 2) -> BookCheck:
    """Open every page of a built book in headless Chromium and check it as a reader would.

    Parameters
    ----------
    html_dir : path
        The built book (``_build/html``).
    browser : path or name, optional
        The Chromium executable (default: the first of :data:`BROWSERS` on PATH).
    screenshots_dir : path, optional
        Where the front page's and the results page's screenshots go
        (default: ``<html_dir>/../browser-check``, next to the build).
    forbidden : list of str, optional
        More strings no page may contain (default: the build's own absolute
        path and the home folder), on top of the folders every machine has
        (``/tmp/``, ``/home/``, ``/root/``, ``/work/``, ...).
    workers : int, default 2
        Browsers open at once.

    Returns
    -------
    BookCheck
        ``.ok`` when no page has a problem; ``.problems`` lists them; ``.summary()`` prints well.

    Raises
    ------
    BookError
        If no browser is found (install Debian's ``chromium``), or `html_dir` holds no built book.
    """
    html_dir = Path(html_dir).resolve()
    executable = find_browser(browser)
    if executable is None:
        raise BookError("no Chromium found (tried " + ", ".join(BROWSERS if browser is None else [str(browser)])
                        + "): install it (Debian: apt-get install -y chromium), or pass --browser PATH.")
    pages = toc_pages(html_dir)
    project = html_dir.parent.parent if html_dir.parent.name == "_build" else html_dir.parent
    forbidden = list(forbidden) if forbidden is not None else [str(project) + os.sep, str(Path.home()) + os.sep]
    forbidden = [path for path in forbidden if len(Path(path).parts) > 1]
    # every notebook and text copy the book ships for download
    shipped = sorted([*(html_dir / "_sources").rglob("*.ipynb"), *(html_dir / "_downloads").rglob("*.ipynb"),
                      *(html_dir / "_downloads").rglob("*.md")])
    notebooks = {}
    for notebook in shipped:
        paths = _machine_paths_in(notebook.read_text(errors="replace"), forbidden)
        if paths:
            notebooks[notebook.relative_to(html_dir).as_posix()] = paths
    with tempfile.TemporaryDirectory(prefix="resque-book-check-") as scratch:
        copy = Path(scratch) / "html"
        shutil.copytree(html_dir, copy)
        for page in pages:
            path = copy / page
            if path.exists():
                path.write_text(path.read_text().replace("</body>", _PROBE + "</body>", 1))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            checks = list(pool.map(lambda page: _check_page(executable, copy, page, forbidden), pages))
    shots = []
    target = Path(screenshots_dir) if screenshots_dir is not None else html_dir.parent / "browser-check"
    target.mkdir(parents=True, exist_ok=True)
    for name, page in SCREENSHOTS.items():
        if (html_dir / page).exists():
            try:
                _open(executable, (html_dir / page).as_uri(), dump=False, screenshot=(target / name).resolve())
            except (subprocess.TimeoutExpired, BookError):
                continue  # a missing screenshot is not a page problem: the page's own check says what failed
            if (target / name).exists():
                shots.append(target / name)
    return BookCheck(html_dir, checks, shots, notebooks, len(shipped))

"""The browser check (resque book check) on hand-made pages with known faults, and its command."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from resque.cli import main as cli_main
from resque.errors import BookError
from resque.study.book.browser import PageCheck, check_book, find_browser, toc_pages

needs_browser = pytest.mark.skipif(
    find_browser() is None,
    reason="needs Chromium (Debian: apt-get install -y chromium; make test installs it where it can)")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

NAV = """<nav class="bd-links bd-docs-nav" aria-label="Main"><ul>
<li><a class="reference internal" href="#">Home</a></li>
{links}
</ul></nav>"""

PAGE = """<!DOCTYPE html><html><head><title>{title}</title>
<style>article {{ width: 600px; font: 16px monospace; }} pre {{ overflow-x: auto; margin: 0; }}</style>
</head><body>{nav}<main><article class="bd-article">{body}</article></main></body></html>"""

FAULTS = {
    "good": "<p>Plain words.</p><div class='highlight'><pre>x = 1</pre></div><img src='dot.png'>",
    "wide_code": "<p>Words.</p><div class='highlight'><pre>" + "y = 1  # " + "z" * 200 + "</pre></div>",
    "broken_image": "<p>Words.</p><img src='missing.png'>",
    "machine_path": "<p>Results in /tmp/build-42/results/quick.</p>",
    "raw_math": "<p>A formula \\(a + b\\) left as typed.</p><span class='math'>\\(a + b\\)</span>",
    "wide_table": "<table><tr>" + "".join(f"<td>column number {k}</td>" for k in range(40)) + "</tr></table>",
    # a table that fits only because its wrapper scrolls: still too wide for a reader
    "scrolled_table": "<div style='overflow-x: auto'><table><tr>"
                      + "".join(f"<td>column number {k}</td>" for k in range(40)) + "</tr></table></div>",
    # code behind a "show code" toggle is measured with the toggle open
    "hidden_wide_code": "<details><summary>Show code</summary><div class='highlight'><pre>"
                        + "w = 1  # " + "z" * 200 + "</pre></div></details>",
    # an output prints what it prints (a traceback's rule): not a code cell
    "wide_output": "<p>Words.</p><div class='cell_output'><div class='highlight'><pre>" + "-" * 200
                   + "</pre></div></div>",
    "raw_markdown_table": "<p>| cost | runs |\n|---|---|\n| Epochs | 84 |</p>",
}


def site(root: Path, pages: dict[str, str], missing: tuple[str, ...] = ()) -> Path:
    """A built-book stand-in: index.html redirecting to book/intro.html, whose navigation lists every page."""
    (root / "book").mkdir(parents=True)
    (root / "book" / "dot.png").write_bytes(PNG)
    (root / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    names = list(pages) + list(missing)
    nav = NAV.format(links="\n".join(f'<li><a class="reference internal" href="{n}.html">{n}</a></li>'
                                     for n in names))
    (root / "book" / "intro.html").write_text(PAGE.format(title="intro", nav=nav, body="<p>The front page.</p>"))
    for name, body in pages.items():
        (root / "book" / f"{name}.html").write_text(PAGE.format(title=name, nav=nav, body=body))
    return root


def test_pages_come_from_the_navigation(tmp_path):
    html = site(tmp_path / "html", {"good": FAULTS["good"]}, missing=("absent",))
    assert toc_pages(html) == ["book/intro.html", "book/good.html", "book/absent.html"]
    with pytest.raises(BookError, match="build the book first"):
        toc_pages(tmp_path)


def test_problems_are_said_in_words():
    page = PageCheck("book/x.html", words=10, math_spans=3, typeset=0, broken_images=["a.png"],
                     machine_paths=["/tmp/x"])
    problems = page.problems
    assert any("3 formulas not typeset" in p for p in problems)
    assert "image does not load: a.png" in problems and "path of the building machine: /tmp/x" in problems
    assert PageCheck("book/y.html", words=5).problems == []


def test_a_site_without_the_books_navigation_is_refused(tmp_path):
    (tmp_path / "index.html").write_text("<html><body><p>not a book</p></body></html>")
    with pytest.raises(BookError, match="no table-of-contents navigation"):
        toc_pages(tmp_path)


def test_machine_paths_are_found_in_a_notebooks_json_text():
    from resque.study.book.browser import _machine_paths_in

    notebook_text = '{"text": ["results in\\n/tmp/build-7/results", "\\u001b[0;32m/home/ann/x.py"]}'
    assert _machine_paths_in(notebook_text, []) == ["/home/ann/x.py", "/tmp/build-7/results"]
    assert _machine_paths_in("see results/quick and ~/data", []) == []


def test_a_missing_browser_is_explained(tmp_path, capsys):
    html = site(tmp_path / "html", {"good": FAULTS["good"]})
    with pytest.raises(BookError, match="apt-get install -y chromium"):
        check_book(html, browser=tmp_path / "no-such-browser")
    assert cli_main(["book", "check", "--html", str(html), "--browser", str(tmp_path / "no-such-browser")]) == 1
    assert "no Chromium found" in capsys.readouterr().err


@needs_browser
def test_the_browser_finds_each_fault_and_passes_a_clean_page(tmp_path, capsys):
    html = site(tmp_path / "html", FAULTS, missing=("absent",))
    report = check_book(html, screenshots_dir=tmp_path / "shots")
    pages = {page.page.removeprefix("book/").removesuffix(".html"): page for page in report.pages}
    assert pages["good"].problems == [] and pages["good"].images == 1 and pages["intro"].problems == []
    assert any("code cell wider" in p for p in pages["wide_code"].problems)
    assert pages["broken_image"].broken_images == ["missing.png"]
    assert pages["machine_path"].machine_paths == ["/tmp/build-42/results/quick"]
    assert any("raw math" in p for p in pages["raw_math"].problems)
    assert any("not typeset" in p for p in pages["raw_math"].problems)
    assert any("table wider" in p for p in pages["wide_table"].problems)
    assert any("table wider" in p for p in pages["scrolled_table"].problems)
    assert any("code cell wider" in p for p in pages["hidden_wide_code"].problems)
    assert pages["wide_output"].problems == []
    assert any("Markdown table shown as text" in p for p in pages["raw_markdown_table"].problems)
    assert pages["absent"].error == "listed in the table of contents but not built"
    assert not report.ok and len(report.problems) == sum(len(p.problems) for p in report.pages)
    assert [shot.name for shot in report.screenshots] == ["front.png"]  # no results page in this site
    assert (tmp_path / "shots" / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert "resque-browser-check" not in (html / "book" / "intro.html").read_text()  # the build is left untouched
    clean = site(tmp_path / "clean", {"good": FAULTS["good"]})
    assert cli_main(["book", "check", "--html", str(clean), "--screenshots", str(tmp_path / "s2")]) == 0
    assert "2 pages opened in the browser" in capsys.readouterr().out

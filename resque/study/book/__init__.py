"""The study's Jupyter Book: assemble the executed notebooks, then build the HTML.

The book never executes anything. ``resque study run`` executes the notebook
templates with papermill into ``<results>/notebooks/<run_id>.ipynb``;
:func:`assemble` copies those into ``book/_generated/`` and writes the pages
that list them, and :func:`build` runs ``jupyter-book build . -W -n --keep-going``
on the result. ``_toc.yml`` is fixed: it names the generated overview pages and
takes the notebooks in with globs, so whatever a profile ran enters the book.

What :func:`assemble` writes (``book/_generated/``, git-ignored, wiped first)::

    sources.md  sources/source-seed<k>.ipynb           the source models
    shifts.md   shifts/shift-<family>-<i>-seed<k>.ipynb one table per shift family
    tasks.md    tasks/task-<task>-seed<k>.ipynb         one table per task
    energy.ipynb    (or energy.md, a note, when it did not run)
    analysis.ipynb  (or analysis.md)
    headline.inc.md  the intro's figure: the PNG output of the analysis cell
                     tagged ``headline`` (else its first PNG; figures/headline.png),
                     or a sentence when there is none
    timings.inc.md   the reproduce page's table of measured times
    findings.inc.md  the findings page: the answers in sentences and their tables, from the records
    profiles.inc.md  the reproduce page's table of the shipped profiles
    teaching.inc.md  the teachers' page: what this book's study cost, measured
    downloads/       each notebook page as MyST Markdown, the tutorial as a notebook
    figures/method.png  the method page's illustration (drawn here, seeded)
    _static/mathjax/    MathJax 3 for offline reading (from `django-static-mathjax`)
    manifest.json       what was copied from where

One module per concern: :mod:`.notebooks` (reading executed notebooks),
:mod:`.collect` (what the results folder holds, run by run), :mod:`.pages`
(the generated Markdown pages), :mod:`.figure` (the method page's drawing),
:mod:`.mathjax` (MathJax bundled for offline reading), :mod:`.downloads`
(the pages in their other format), :mod:`.build` (assemble and run Jupyter
Book), :mod:`.browser` (the built book checked in headless Chromium). Command
line: ``resque book build``, ``resque book check``, ``resque book tutorial``.
"""

from ...errors import BookBuildError, BookError
from .build import GENERATED, assemble, build
from .notebooks import HEADLINE_TAG, notebook_title

__all__ = ["BookError", "BookBuildError", "GENERATED", "HEADLINE_TAG", "assemble", "build", "notebook_title"]

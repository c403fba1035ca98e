"""Does RESQUE predict what retraining costs? Records to a table, correlations with intervals, plots.

One module per concept: :mod:`.frame` (records to the table), :mod:`.bootstrap`
(weighted statistics of all resamples at once), :mod:`.correlations` (per group
and pooled, and their tables), :mod:`.savings`, :mod:`.ranking` (every
registered predictor, oriented), :mod:`.findings` (sentences), :mod:`.plots`,
:mod:`.forecast_eval` (leave-one-experiment-out evaluation of the forecast),
:mod:`.questions` (within vs between families, beyond the intensity, Harrell's
C, two-way bootstrap, paired comparisons with Holm's correction) and
:mod:`.report` (their answers as Markdown: ``resque study report``).

The pipeline is three steps, each a plain function
the analysis notebook calls::

    frame = load_records("results/smoke")          # one row per finished shift/task run
    corr = correlations(frame, "resque_dist")      # per family and pooled, per measure
    summary_table(corr)                            # measure x method: r [95 % CI]

Choices, and why:

- **Which runs.** Only complete ``shift`` and ``task`` records are rows; the
  ``scratch`` records of the same experiment become the ``scratch_*`` columns
  of their row (the yardstick), and source models are not runs of the study.
  Incomplete files are counted and unreadable ones named in ``frame.attrs``.
- **Censored runs** (stopped by a cutoff or the cap before reaching the target)
  are kept: their costs are lower bounds of what reaching the target would have
  cost, which is data, and dropping them would bias the analysis towards easy
  shifts. Every correlation row says how many of its runs were censored, and
  ``exclude_censored=True`` gives the analysis without them. The reviewer's
  questions (:mod:`.questions`) are stricter: their rank correlations leave
  censored runs out, and Harrell's C keeps them as censored.
- **Bootstrap.** Percentile intervals from resampling runs with replacement;
  with several seeds, seeds and experiments are resampled together (a two-way
  bootstrap: each run weighs its seed's draw times its experiment's), since
  the runs of one seed share a source model and data split, and those of one
  experiment share their data; ``two_way=False`` resamples whole seeds only.
  A resample is represented by how many times it draws each run (a weight), so
  all resamples are computed at once as weighted statistics, exactly equal to
  the statistics of the duplicated samples (ties included, as scipy counts them).
- **Degenerate groups** (fewer than 3 runs, a constant column) give NaN and a
  ``note`` that says why, never an exception or a warning.
"""

from .bootstrap import bootstrap_statistics
from .correlations import HEADLINE, METHODS, correlations, family_table, summary_table
from .findings import findings, winner_sentences
from .forecast_eval import leave_one_out, plot_predicted_vs_measured, summarize_leave_one_out
from .frame import describe_skipped, load_records, resolve_results_dir
from .labels import label_of
from .plots import plot_scatter, plot_vs_intensity
from .ranking import best_predictors, family_winners, pairwise_accuracy, rank_predictors, ranking_table
from .questions import add_baselines, compare_predictors, harrell_c, within_between
from .report import report_markdown
from .savings import SAVINGS, savings_summary

__all__ = [
    "HEADLINE", "METHODS", "SAVINGS",
    "load_records", "resolve_results_dir", "describe_skipped", "label_of",
    "bootstrap_statistics", "correlations", "summary_table", "family_table", "savings_summary",
    "rank_predictors", "best_predictors", "family_winners", "pairwise_accuracy", "ranking_table", "findings", "winner_sentences",
    "plot_scatter", "plot_vs_intensity",
    "leave_one_out", "summarize_leave_one_out", "plot_predicted_vs_measured",
    "add_baselines", "within_between", "harrell_c", "compare_predictors", "report_markdown",
]

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


def test_readme_results_are_what_the_report_command_prints_from_the_committed_runs_table():
    # The README quotes the quick study's answers; they must be what `resque study report` prints
    # from the runs table committed next to the tests (saved from that run's records with --save-table).
    pd = __import__("pytest").importorskip("pandas")
    from resque.study.analysis.report import study_report

    text = README.read_text()
    quoted = re.search(r"<!-- report:start -->\n(.*?)<!-- report:end -->", text, flags=re.S)
    assert quoted, "README.md has no <!-- report:start --> ... <!-- report:end --> block"
    table = pathlib.Path(__file__).with_name("data") / "quick-runs.csv"
    printed = study_report(pd.read_csv(table), n_boot=2000, measures=("epochs",))
    assert quoted.group(1).strip() == printed.strip()

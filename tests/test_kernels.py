"""One kernel for a whole local study: reused, wiped clean between notebooks, replaced after a failure.

The notebooks here are tiny and import nothing heavy; tests/test_study_e2e.py
checks that the smoke study's records are the same in a warm kernel as in
kernels of their own.
"""

from __future__ import annotations

import json

import pytest

papermill = pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

from resque.study.kernels import WarmKernel  # noqa: E402


def notebook(path, *sources):
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def execute(kernel, source, output):
    papermill.execute_notebook(str(source), str(output), kernel_name="python3", progress_bar=False,
                               km=kernel.manager(), extra_arguments=["--IPKernelApp.log_level=ERROR"])
    kernel.release()
    return json.loads(output.read_text())


def printed(executed):
    return "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


@pytest.fixture
def kernel():
    with WarmKernel("python3") as warm:
        yield warm


NAMES = "print(sorted(n for n in globals() if not n.startswith('_')))"


def test_the_next_notebook_runs_in_the_same_process_with_nothing_of_the_last_one_left(tmp_path, kernel):
    # a library's warning: shown once per place in the library, so a second notebook would miss it unless told
    (tmp_path / "warner.py").write_text("import warnings\ndef warn():\n    warnings.warn('shown in every notebook')\n")
    warn = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport warner\nwarner.warn()"
    first = notebook(tmp_path / "first.ipynb", NAMES,
                     "import os, sys, warnings\nleft_over = 42\nprint(os.getpid())",
                     "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\nplt.figure()",
                     "sys.modules['json'].resque_mark = 'still here'",  # a module's state stays: that is the reuse
                     warn)
    second = notebook(tmp_path / "second.ipynb", NAMES,
                      "import os, sys, warnings\nprint(os.getpid())",
                      "import matplotlib.pyplot as plt\nprint('figures', len(plt.get_fignums()))",
                      "print(getattr(sys.modules['json'], 'resque_mark', None))",
                      warn)
    one = printed(execute(kernel, first, tmp_path / "one.ipynb")).splitlines()
    executed = execute(kernel, second, tmp_path / "two.ipynb")
    two = printed(executed).splitlines()
    assert two[1] == one[1] and kernel.kernels == 1 and kernel.notebooks == 2  # the same process
    assert two[0] == one[0]  # the namespace a fresh kernel starts with: no left_over, no plt
    assert two[2] == "figures 0" and two[3] == "still here"
    assert [c["execution_count"] for c in executed["cells"]] == [1, 2, 3, 4, 5]  # counted afresh
    warned = [o for c in executed["cells"] for o in c["outputs"] if o.get("name") == "stderr"]
    assert any("shown in every notebook" in "".join(o["text"]) for o in warned)


def test_a_discarded_or_dead_kernel_is_replaced_by_a_fresh_one(tmp_path, kernel):
    pid = notebook(tmp_path / "pid.ipynb", "import os\nprint(os.getpid())")
    first = printed(execute(kernel, pid, tmp_path / "a.ipynb")).strip()
    kernel.discard()  # what the runner does after a failed notebook
    second = printed(execute(kernel, pid, tmp_path / "b.ipynb")).strip()
    assert first != second and kernel.kernels == 2

    dying = notebook(tmp_path / "dying.ipynb", "import os\nos._exit(1)")
    with pytest.raises(Exception):  # papermill reports the dead kernel
        execute(kernel, dying, tmp_path / "c.ipynb")
    third = printed(execute(kernel, pid, tmp_path / "d.ipynb")).strip()  # noticed without being told
    assert third not in (first, second) and kernel.kernels == 3


def test_a_failed_notebook_in_a_study_leaves_nothing_to_the_next(tmp_path):
    """The runner replaces the kernel after a failure: a half-done notebook's state is never inherited."""
    from resque.study.profiles import Experiment
    from resque.study.runner import run_experiment

    results = tmp_path / "results"
    failing = notebook(tmp_path / "failing.ipynb", "results_dir = ''", "half_done = True\nraise ValueError('no')")
    checking = notebook(tmp_path / "checking.ipynb", "results_dir = ''", "assert 'half_done' not in globals()")
    for path in (failing, checking):  # papermill injects the parameters after the cell tagged "parameters"
        nb = nbformat.read(path, as_version=4)
        nb.cells[0].metadata["tags"] = ["parameters"]
        nbformat.write(nb, path)
    experiment = Experiment(run_id="energy", kind="energy", parameters={"results_dir": str(results)})
    with WarmKernel("python3") as kernel:
        failed = run_experiment(experiment, failing, results, kernel=kernel)
        assert failed.status == "failed" and "ValueError: no" in failed.reason
        done = run_experiment(experiment, checking, results, kernel=kernel)
        again = run_experiment(experiment, checking, results, kernel=kernel)
    assert done.status == again.status == "done"
    assert kernel.kernels == 2 and kernel.notebooks == 2  # a fresh kernel after the failure, then reused


def test_kernels_start_with_the_allocator_and_blas_tuning_unless_the_user_set_their_own(tmp_path, monkeypatch):
    from resque.study.kernels import KERNEL_TUNING

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "12345")  # the user's choice
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    show = notebook(tmp_path / "env.ipynb", "import os\nprint(os.getpid(), os.environ['MALLOC_MMAP_THRESHOLD_'], "
                                            "os.environ['MALLOC_TRIM_THRESHOLD_'], os.environ['OPENBLAS_THREAD_TIMEOUT'])")
    with WarmKernel("python3", reuse=False) as fresh:  # a kernel per notebook, started the same way
        first = printed(execute(fresh, show, tmp_path / "a.ipynb")).split()
        second = printed(execute(fresh, show, tmp_path / "b.ipynb")).split()
    assert first[1:] == second[1:] == ["12345", KERNEL_TUNING["MALLOC_TRIM_THRESHOLD_"],
                                       KERNEL_TUNING["OPENBLAS_THREAD_TIMEOUT"]]
    assert first[0] != second[0] and fresh.kernels == 2


def test_the_command_line_asks_for_a_kernel_per_notebook_with_fresh_kernels(monkeypatch):
    import resque.study.runner as runner
    from resque.cli import main
    from resque.study.runner import StudySummary

    seen = []

    def fake_run_study(profile, results, **options):
        seen.append(options["fresh_kernels"])
        return StudySummary(profile="smoke", results_dir=results)

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    assert main(["study", "run", "--profile", "smoke", "--no-progress"]) == 0
    assert main(["study", "run", "--profile", "smoke", "--no-progress", "--fresh-kernels"]) == 0
    assert seen == [False, True]


def test_a_reused_kernel_is_handed_over_listening_and_its_notebooks_keep_every_output(tmp_path, kernel, monkeypatch):
    from jupyter_client.asynchronous import AsyncKernelClient

    checks = []
    full_check = AsyncKernelClient.wait_for_ready

    async def counted(self, timeout=None):
        checks.append(self)
        return await full_check(self, timeout)

    monkeypatch.setattr(AsyncKernelClient, "wait_for_ready", counted)
    source = notebook(tmp_path / "talk.ipynb", "import sys\nprint('out', 1)\nprint('err', file=sys.stderr)",
                      "for i in range(3):\n    print('line', i)", "6 * 7")
    runs = [execute(kernel, source, tmp_path / f"run{i}.ipynb") for i in range(3)]
    assert kernel.kernels == 1 and kernel.notebooks == 3
    # only the kernel's first client ran papermill's readiness check; the others came from the reset, listening
    assert len(checks) == 1
    for executed in runs:
        assert printed(executed) == "out 1\nline 0\nline 1\nline 2\n"
        last = executed["cells"][2]["outputs"]
        assert "".join(last[0]["data"]["text/plain"]) == "42" and last[0]["execution_count"] == 3
        errors = [o for o in executed["cells"][0]["outputs"] if o.get("name") == "stderr"]
        assert "".join(errors[0]["text"]) == "err\n"


def test_a_client_that_missed_the_reset_broadcast_runs_the_readiness_check(tmp_path, kernel, monkeypatch):
    import resque.study.kernels as kernels

    monkeypatch.setattr(kernels, "_heard_idle", lambda client, sent, wait=0.5: False)
    source = notebook(tmp_path / "small.ipynb", "print('hello')")
    for i in range(2):
        assert printed(execute(kernel, source, tmp_path / f"out{i}.ipynb")) == "hello\n"
    assert kernel.kernels == 1 and kernel.notebooks == 2


def test_a_reset_collects_the_last_notebooks_cycles_and_sets_the_survivors_aside(tmp_path, kernel):
    # a cycle that only the notebook's namespace kept alive; a module (which survives the reset) holds a weak reference
    first = notebook(tmp_path / "first.ipynb",
                     "import sys, weakref\nclass Node: pass\nnode = Node()\nnode.me = node\n"
                     "sys.modules['json'].resque_ref = weakref.ref(node)")
    second = notebook(tmp_path / "second.ipynb",
                      "import gc, sys\nprint(sys.modules['json'].resque_ref() is None, gc.get_freeze_count() > 0)")
    execute(kernel, first, tmp_path / "one.ipynb")
    assert printed(execute(kernel, second, tmp_path / "two.ipynb")).split() == ["True", "True"]


def test_a_notebooks_figure_display_settings_do_not_reach_the_next_one(tmp_path, kernel):
    first = notebook(tmp_path / "first.ipynb",
                     "%matplotlib inline\n%config InlineBackend.print_figure_kwargs = {'bbox_inches': None}")
    second = notebook(tmp_path / "second.ipynb",
                      "%matplotlib inline\nfrom matplotlib_inline.config import InlineBackend\n"
                      "print(InlineBackend.instance().print_figure_kwargs)")
    execute(kernel, first, tmp_path / "one.ipynb")
    assert printed(execute(kernel, second, tmp_path / "two.ipynb")).strip() == "{'bbox_inches': 'tight'}"

"""A bare install (no extras) imports resque, scores, trains and tracks; extras are named when missing.

The extras are made unimportable in a fresh interpreter (a finder that refuses
them), which is what a ``pip install resque`` without ``[study]`` or ``[energy]``
looks like.
"""

import subprocess
import sys
import textwrap

EXTRAS = ("pandas", "matplotlib", "seaborn", "yaml", "papermill", "nbformat", "dask", "codecarbon", "pynvml")


def run_without_extras(code: str, tmp_path) -> subprocess.CompletedProcess:
    # A stub package per extra that fails to import, first on the path: importlib can still
    # find a spec (as torch probes optional modules), but `import pandas` fails as uninstalled.
    for name in EXTRAS:
        stub = tmp_path / "not-installed" / name
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text(f"raise ModuleNotFoundError({'No module named ' + repr(name)!r}, name={name!r})\n")
    blocker = f"import sys\nsys.path.insert(0, {str(tmp_path / 'not-installed')!r})\n"
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_bare_install_imports_and_works(tmp_path):
    result = run_without_extras("""
        import warnings
        import torch
        from torch.utils.data import TensorDataset
        import resque

        torch.manual_seed(0)
        data = TensorDataset(torch.rand(40, 1, 8, 8), torch.arange(40) % 2)
        model = resque.create_model("small_cnn", num_classes=2, image_size=8)
        layer = resque.default_layer(model)
        print("dist", float(resque.resque_dist(model, data, data, layer, progress=False)))
        print("task", float(resque.resque_task(model, data, layer, progress=False)))
        print("predictors", len(resque.list_predictors()), len(resque.list_predictors("shift") + resque.list_predictors("task")))
        config = resque.TrainConfig(max_epochs=1, batch_size=20, target_accuracy=0.99)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, record = resque.train_from_scratch("small_cnn", data, data, config, run_id="r",
                                                  model_kwargs={"image_size": 8, "num_classes": 2},
                                                  energy=True, progress=False)
        print("energy", record.totals["energy_kwh"])
        print("warned", any("resque[energy]" in str(w.message) for w in caught))
        try:
            resque.fit_forecast([record])
        except resque.ResqueError as error:
            print("forecast", error)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert abs(float(out.split("dist ")[1].split()[0])) < 1e-6  # the same data on both sides
    # 1 - ARI: ARI dips a little below 0 for worse-than-chance clusters (TaskResult documents [0, 1.5])
    assert 0.0 <= float(out.split("task ")[1].split()[0]) <= 1.5
    count, by_kind = out.split("predictors ")[1].split()[:2]
    assert int(count) == int(by_kind) >= 17  # RESQUE's variants and every rival, each once
    assert "energy None" in out and "warned True" in out  # energy missing, and said so with the extra to install
    assert "pip install 'resque[study]'" in out  # the forecast needs pandas and says where it comes from


def test_bare_install_command_line_help(tmp_path):
    result = run_without_extras("""
        from resque.cli import main
        try:
            main(["--help"])
        except SystemExit as done:
            print("exit", done.code)
        print("study", main(["study", "list"]))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exit 0" in result.stdout and "forecast" in result.stdout and "book" in result.stdout
    # a command that needs an extra says which one, in one line and with exit status 2
    assert "study 2" in result.stdout and "resque[study]" in result.stderr

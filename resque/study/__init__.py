"""The study: profiles, experiment grid, notebooks run by papermill, analysis, book.

Layout of a study's results (``results/<profile>/`` by default; ``--results``
or ``$RESQUE_RESULTS`` moves it)::

    results/<profile>/
      records/<run_id>.json         one RunRecord per run (resque.cost.records)
      notebooks/<run_id>.ipynb      the executed notebook of each experiment
      models/source-seed<k>.safetensors              source model checkpoint
      models/source-seed<k>.fingerprint.safetensors  its RESQUE_dist fingerprint
      failed/<run_id>.json          why an experiment failed (removed when it later succeeds)

Every experiment is one papermill execution of a template in ``notebooks/``
with a ``parameters`` cell; :func:`resque.study.profiles.expand` lists them.
"""

from .profiles import Experiment, Profile, expand, list_profiles, load_profile
from .runner import StudySummary, plan_study, run_study

__all__ = ["Experiment", "Profile", "expand", "list_profiles", "load_profile", "run_study", "plan_study", "StudySummary"]

"""Loaded by every Python process started with this folder on PYTHONPATH: tune workers, and the step processes of a
grid on a Ray cluster whose nodes were started with it.

With XSTILTS_TEST_HOLD_DIR set, a trial whose training has begun (its MLflow run is on the Optuna trial) waits
until the file `release` appears in that folder, so that a test can kill a worker mid-trial however fast the
trial itself would be.

With XSTILTS_TEST_HOLD_STEP_DIR set, a `target` step process (`python -m pipelines.target`) whose training has begun
writes "<its run id> <its pid>" to the file `held` in that folder and waits until `release` appears there, so that a
test can take the step's node away mid-step. A step that starts once `release` exists (the retry) is not held.
"""

import os
import sys
import time
from pathlib import Path


def hold_after_training_begins(callback_class, release: Path, on_hold=lambda: None) -> None:
    """Makes `callback_class.on_train_begin` wait for the file `release` (after calling `on_hold`)."""
    begin_training = callback_class.on_train_begin

    def hold(self, *args, **kwargs):
        begin_training(self, *args, **kwargs)
        if not release.exists():
            on_hold()
        while not release.exists():
            time.sleep(0.1)

    callback_class.on_train_begin = hold


if os.environ.get("XSTILTS_TEST_HOLD_DIR"):
    import tuning.trial

    hold_after_training_begins(tuning.trial.PruningCallback, Path(os.environ["XSTILTS_TEST_HOLD_DIR"]) / "release")

if os.environ.get("XSTILTS_TEST_HOLD_STEP_DIR") and sys.orig_argv[1:3] == ["-m", "pipelines.target"]:
    import components.progress

    hold_dir = Path(os.environ["XSTILTS_TEST_HOLD_STEP_DIR"])
    run_id = os.environ["MLFLOW_RUN_ID"]  # read now: the entry point's start_run takes it out of the environment

    def tell_held() -> None:
        (hold_dir / "held.tmp").write_text(f"{run_id} {os.getpid()}", encoding="utf-8")
        (hold_dir / "held.tmp").rename(hold_dir / "held")  # whole, or not there

    hold_after_training_begins(components.progress.TrainerProgress, hold_dir / "release", tell_held)

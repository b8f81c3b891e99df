"""Loaded by every Python process started with this folder on PYTHONPATH: the tune workers of the kill tests.

With XSTILTS_TEST_HOLD_DIR set, a trial whose training has begun (its MLflow run is on the Optuna trial) waits
until the file `release` appears in that folder, so that a test can kill a worker mid-trial however fast the
trial itself would be.
"""

import os

if os.environ.get("XSTILTS_TEST_HOLD_DIR"):
    import time
    from pathlib import Path

    import tuning.trial

    release = Path(os.environ["XSTILTS_TEST_HOLD_DIR"]) / "release"
    begin_training = tuning.trial.PruningCallback.on_train_begin

    def hold_after_training_begins(self, *args, **kwargs):
        begin_training(self, *args, **kwargs)
        while not release.exists():
            time.sleep(0.1)

    tuning.trial.PruningCallback.on_train_begin = hold_after_training_begins

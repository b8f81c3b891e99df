"""The distributed path: one `target` launch over two CPU processes (torchrun, gloo) is one MLflow run."""

import math
import os
import socket
import subprocess
import sys

import mlflow
from mlflow.tracking import MlflowClient

from components.settings import PROJECT_ROOT

PROCESSES, PER_DEVICE_BATCH, TRAIN_EXAMPLES = 2, 16, 64


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_process_target_launch_is_one_run_that_trained_on_both(tracking_store, tiny_model_dir):
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(PROCESSES), "--master_port",
         str(free_port()), "-m", "pipelines.target", "--task", "xnli", "--model", str(tiny_model_dir), "--epochs",
         "1", "--batch-size", str(PER_DEVICE_BATCH), "--max-length", "64", "--max-train-examples",
         str(TRAIN_EXAMPLES)],
        env=environment, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("target run ") == 1  # from the main process only

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [run.info.status for run in runs] == ["FINISHED"]
    run = runs[0]
    assert run.data.params["world_size"] == str(PROCESSES)
    assert run.data.params["max_train_examples"] == str(TRAIN_EXAMPLES)
    # Each process trains on its half of the examples: one epoch takes half the optimizer steps of one process (4).
    steps = {point.step for point in MlflowClient().get_metric_history(run.info.run_id, "train/xnli/train_loss")}
    assert steps == {math.ceil(TRAIN_EXAMPLES / (PROCESSES * PER_DEVICE_BATCH))}
    assert [artifact.path for artifact in MlflowClient().list_artifacts(run.info.run_id)] == ["model"]

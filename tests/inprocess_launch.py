"""`launch_in_process`: a stand-in for `pipelines.main.launch` that runs a grid step's entry point in this process.

A step launched by `main` is an `mlflow run` of its entry point: a process that spends most of its time importing
torch, transformers and mlflow (about 13 s of a tiny-model step on 2 busy cores), which makes a GPU study's hundreds
of shrunk steps an hour of CI. Here the step runs as the same command line, parsed by the same click command, in
this process, with what `mlflow run` hands its process: the step run created as `launch` creates it, found by the
entry point through MLFLOW_RUN_ID (`components.tracking.phase_run`), the working directory of the project, and the
run ended FAILED when the entry point fails (FINISHED when it ends and left the run RUNNING, as `mlflow run` does).
What a step changes in the process (environment, working directory, MLflow's active run and tracking URI, signal
handlers, torch's thread count) is put back afterwards, so that the next step starts as a fresh process would.

Use it with `monkeypatch.setattr(pipelines.main, "launch", launch_in_process)`; tests/test_configs.py checks that a
study run this way ends with the same statuses and metrics as one run through `mlflow run`.
"""

import gc
import importlib
import os
import shlex
import signal
import threading
import traceback
from contextlib import contextmanager
from typing import Iterator

import mlflow
import torch
from mlflow.entities import RunStatus
from mlflow.projects.utils import get_entry_point_command, get_run_env_vars, load_project
from mlflow.tracking import MlflowClient
from mlflow.tracking import fluent

from components import tracking
from components.settings import PROJECT_ROOT
from pipelines import main


def launch_in_process(entry: str, parameters: dict[str, str], key: str, parent_run_id: str, experiment_id: str,
                      tags: dict[str, str] | None = None, *, devices: str | None = None) -> str:
    """`pipelines.main.launch`, in this process: runs one entry point to its end in a step run created here; returns
    its run id, or raises naming the failed run. One step at a time: the steps share this process's environment,
    so `devices` (a GPU of its own for each of several concurrent steps) cannot be given."""
    if devices is not None:
        raise ValueError(f"an in-process step runs on this process's devices, not on devices {devices}")
    run_id = main.create_step_run(entry, parameters, key, parent_run_id, experiment_id, tags, devices)
    try:
        arguments = entry_point_arguments(entry, parameters)
        with fresh_process_state(get_run_env_vars(run_id, experiment_id)):
            command = importlib.import_module(f"pipelines.{entry}").main
            command.main(args=arguments, prog_name=f"pipelines.{entry}", standalone_mode=False)
    except SystemExit as exit_:  # the entry point's error boundary exits 2 (bad input) or 128 + a signal's number
        if exit_.code not in (None, 0):
            _end_if_running(run_id, "FAILED")
            raise RuntimeError(f"run {run_id} FAILED; its own error is printed above (exit status {exit_.code})") \
                from None
    except Exception as error:
        traceback.print_exc()  # where a step process would print it, before it exits
        _end_if_running(run_id, "FAILED")
        raise RuntimeError(f"run {run_id} FAILED: {type(error).__name__}: {error}") from error
    _end_if_running(run_id, "FINISHED")
    return run_id


def entry_point_arguments(entry: str, parameters: dict[str, str]) -> list[str]:
    """The options `mlflow run` would pass the entry point: its MLproject command with `parameters` (and the declared
    defaults) substituted, less the `python -m pipelines.<entry>` that starts it."""
    [command] = get_entry_point_command(load_project(str(PROJECT_ROOT)), entry, parameters, None)
    words = shlex.split(command)
    start = ["python", "-m", f"pipelines.{entry}"]
    if words[:3] != start:
        raise ValueError(f"the MLproject command of {entry} does not start with {' '.join(start)}: {command}")
    return words[3:]


@contextmanager
def fresh_process_state(environment: dict[str, str]) -> Iterator[None]:
    """Within it, this thread has no active MLflow run, the working directory is the project's and `environment` is
    added to os.environ, as in the process `mlflow run` starts; everything the entry point changes in the process is
    put back at the end."""
    saved_environ, saved_cwd = dict(os.environ), os.getcwd()
    saved_uri, saved_threads = mlflow.get_tracking_uri(), torch.get_num_threads()
    # MLflow's active runs are per thread (its `_active_run_stack`); the entry point must find none of the caller's.
    run_stack = fluent._active_run_stack.get()
    saved_runs, run_stack[:] = list(run_stack), []
    in_main_thread = threading.current_thread() is threading.main_thread()
    saved_handlers = {signum: signal.getsignal(signum) for signum in tracking.STOP_SIGNALS} if in_main_thread else {}
    os.environ.update(environment)
    os.chdir(PROJECT_ROOT)
    try:
        yield
    finally:
        while mlflow.active_run():  # as MLflow's exit hook ends a run its process left active
            mlflow.end_run()
        run_stack[:] = saved_runs
        os.environ.clear()
        os.environ.update(saved_environ)
        os.chdir(saved_cwd)
        mlflow.set_tracking_uri(saved_uri)
        torch.set_num_threads(saved_threads)
        for signum, handler in saved_handlers.items():
            signal.signal(signum, handler)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within it, Python's garbage collector leaves alone the objects that exist when it starts: the Trainer collects
    garbage after each training (accelerate's `free_memory`), and in a test process that has imported and cached
    much more than a step process, each collection takes about a second."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _end_if_running(run_id: str, status: str) -> None:
    """Ends the step run with `status` unless the entry point ended it (as `mlflow run` does after its process)."""
    client = MlflowClient(tracking.default_tracking_uri())
    if not RunStatus.is_terminated(client.get_run(run_id).info.status):
        client.set_terminated(run_id, status)

"""The only module of `components/` that talks to MLflow: runs, params, metric keys and artifact hand-offs.

Metric keys: `<split>/<task>/<lang>/<metric>` (e.g. `eval/xnli/de/accuracy`, `select/xnli/en/accuracy`), plus
`train/<task>/*` curves and `peak_rss_mb` (and `peak_gpu_mb` on a GPU); a multi-task run logs what belongs to its
whole mixture (its training curves, the mean selection metric) under the task name `multitask`. Artifacts: `model/`
(a Hugging Face folder), `predictions/<task>/<split>-<lang>[.<n>-of-<N>].<ext>` with `predictions/<task>/manifest.json`
(`components.predictions`), and for adapter runs `adapters/<name>/`, `heads/<name>/`
and `corpus/composition.json`.
"""

import fcntl
import functools
import os
import resource
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import psutil
import requests
import torch
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_SOURCE_NAME,
                                      MLFLOW_SOURCE_TYPE)
from transformers import TrainerCallback

from components.errors import Interrupted, XstiltsInputError
from components.settings import PROJECT_ROOT

MODEL_ARTIFACT = "model"
PREDICTIONS_ARTIFACT = "predictions"
ADAPTERS_ARTIFACT = "adapters"  # adapters/<adapter name>/: adapter runs hand on adapters, never the base model
HEADS_ARTIFACT = "heads"  # heads/<adapter name>/: the head trained with that adapter
CORPUS_ARTIFACT = "corpus"  # corpus/composition.json of a language adapter's training text
TAG_PREFIX = "xlt."
MULTITASK = "multitask"  # the task slot of metric keys that describe a multi-task run's whole mixture


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a server), else the project's local SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


# A tracking server that is down fails a command after these tries (within 20 s), where MLflow's client would retry
# each request for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES: 7, with exponential backoff) before the first error.
SERVER_TRIES, SERVER_WAIT_S, SERVER_TIMEOUT_S = 3, 2.0, 5.0


def connect() -> str:
    """Points MLflow at the tracking store and, for a server, checks that it answers, for a SQLite store, that it
    exists (`_create_sqlite_store`); returns the URI."""
    uri = default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif uri.startswith("sqlite:///"):
        _create_sqlite_store(uri)
    return uri


def _create_sqlite_store(uri: str) -> None:
    """Opens the SQLite store under an exclusive lock on `<database>.lock`: MLflow creates a new store's tables on
    first use, and two processes doing that at once both try, and one fails with "table ... already exists". With
    the lock, the first creates the tables and the others find them."""
    database = uri.removeprefix("sqlite:///").partition("?")[0]  # the file, without the URI's query (`?timeout=`)
    if database in ("", ":memory:"):
        return
    with open(f"{database}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        MlflowClient(uri).search_experiments(max_results=1)


def _check_server(uri: str) -> None:
    for attempt in range(1, SERVER_TRIES + 1):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S).raise_for_status()
            return
        except requests.RequestException as error:
            if attempt == SERVER_TRIES:
                raise XstiltsInputError(
                    f"the tracking server {uri} (MLFLOW_TRACKING_URI) does not answer after {SERVER_TRIES} tries "
                    f"({type(error).__name__}): start it (scripts/tracking_server.sh start) or point "
                    "MLFLOW_TRACKING_URI at a running one") from None
            time.sleep(SERVER_WAIT_S)


def is_main_process() -> bool:
    """False on the other processes of a distributed launch (`torchrun`, `accelerate launch`; they set RANK): those
    train alongside the main process but log nothing, so that one launch is one run."""
    return int(os.environ.get("RANK", "0")) == 0


def main_process_only(function):
    """Makes `function`, which writes to the active run, do nothing on the other processes of a distributed launch,
    which have no run (MLflow would start one for them)."""

    @functools.wraps(function)
    def on_main_process(*args, **kwargs):
        if is_main_process():
            return function(*args, **kwargs)
        return None

    return on_main_process


@contextmanager
def phase_run(phase: str, params: dict, tags: dict | None = None, parent_run_id: str = "") -> Iterator[str]:
    """One MLflow run for one phase invocation; yields its id.

    Under `mlflow run` this attaches to the project's run (MLFLOW_RUN_ID), so the Trainer cannot end it. Any
    exception ends the run FAILED before it propagates, so no run is left RUNNING; a stop by SIGTERM or SIGINT
    (Ctrl-C) ends it KILLED (`stopped_by_signals`). The other processes of a distributed launch start no run and
    yield "".

    Args:
        parent_run_id: nest the run under this run (a tuning trial under its study run), which need not be this
            process's active run: a worker that joined a study runs its trials under the study's run.
    """
    connect()
    if not is_main_process():
        yield ""
        return
    with stopped_by_signals(), mlflow.start_run(nested=bool(parent_run_id)) as run:
        try:
            if parent_run_id:
                mlflow.set_tag(MLFLOW_PARENT_RUN_ID, parent_run_id)
            mlflow.set_tags({f"{TAG_PREFIX}phase": phase, **{f"{TAG_PREFIX}{k}": v for k, v in (tags or {}).items()}})
            log_params(params)
            yield run.info.run_id
            mlflow.log_metric("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            if torch.cuda.is_available():  # on a GPU, the peak that limits batch size is the device's
                mlflow.log_metric("peak_gpu_mb", torch.cuda.max_memory_allocated() / 2**20)
        except KeyboardInterrupt:  # stopped, not failed; `start_run` leaves a run that has ended as it is
            if mlflow.active_run() and mlflow.active_run().info.run_id == run.info.run_id:  # not ended (pruned) yet
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Within it, SIGTERM and SIGINT raise `Interrupted` (Python's own SIGINT handler raises KeyboardInterrupt, and
    SIGTERM would end the process without a word, leaving its run RUNNING).

    The first signal also goes on to the processes this one started (a study's step processes, a tuning study's
    workers), which then end their own runs KILLED: a SIGTERM reaches this process alone, and the study would
    otherwise wait for its running steps to finish. Later signals are ignored until the block ends, so that ending
    the run is not cut short. Python sets signal handlers in its main thread only; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(signum: int, frame) -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _stopping)
    for child in psutil.Process().children(recursive=True):
        try:
            child.send_signal(signum)
        except psutil.NoSuchProcess:
            pass  # ended meanwhile
    raise Interrupted(signum)


def _stopping(signum: int, frame) -> None:
    """A signal while the first one is handled does nothing (unlike SIG_IGN, which the processes started meanwhile
    would inherit)."""


@main_process_only
def log_params(params: dict) -> None:
    """Logs params not logged yet; `mlflow run` already logged its -P values as the strings given (`2e-5`), and
    logging the same key again with another spelling (`2e-05`) would be refused."""
    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({key: str(value) for key, value in params.items() if key not in existing})


def metric_key(split: str, task: str, lang: str, metric: str) -> str:
    return f"{split}/{task}/{lang}/{metric}"


EVAL_SPLIT = "eval_split"  # the param saying which split (test, dev) a language's eval/ metrics were scored on
EVAL_SPLIT_REASON = "eval_split_reason"  # and why that split (`components.data.choose_evaluation_split`)
# The param saying why a language's eval/ metrics are optimistic (e.g. scored on the data the model or threshold was
# selected on); absent where they are not. The analysis labels such scores and keeps them out of benchmark averages.
OPTIMISTIC = "optimistic"


def language_param_key(name: str, task: str, lang: str) -> str:
    """Params that differ by language are keyed like metrics: `<name>/<task>/<lang>`, e.g. `eval_split/udpos/de`."""
    return f"{name}/{task}/{lang}"


@main_process_only
def log_language_metrics(split: str, task: str, lang: str, metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({metric_key(split, task, lang, name): value for name, value in metrics.items()}, step=step)


@main_process_only
def log_dir(local_dir: Path, artifact_path: str) -> None:
    mlflow.log_artifacts(str(local_dir), artifact_path=artifact_path)


@main_process_only
def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def finished_run(run_id: str, *expected_phases: str):
    """The FINISHED run `run_id` of one of `expected_phases`, or one clear error saying what is wrong with it."""
    uri = connect()
    try:
        run = MlflowClient().get_run(run_id)
    except Exception:
        raise XstiltsInputError(f"run {run_id!r} does not exist in the tracking store {uri}") from None
    phase = run.data.tags.get(f"{TAG_PREFIX}phase")
    if phase not in expected_phases:
        expected = " or ".join(repr(expected_phase) for expected_phase in expected_phases)
        raise XstiltsInputError(f"run {run_id} is a {phase!r} run; expected a {expected} run")
    if run.info.status != "FINISHED":
        raise XstiltsInputError(f"run {run_id} is {run.info.status}; only FINISHED runs are handed on")
    return run


CACHE_KEY_TAG = f"{TAG_PREFIX}cache_key"


def reusable_run(experiment_id: str, cache_key: str) -> str | None:
    """The newest FINISHED run with `cache_key`, found by a tracking-server query.

    Runs with the key still RUNNING were left so by a killed study (a live one is never asked about its own steps):
    they are marked FAILED, so that neither they nor their artifacts are ever taken for complete.
    """
    client = MlflowClient()
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{CACHE_KEY_TAG}` = '{cache_key}'",
                              order_by=["attributes.start_time DESC"])
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "FAILED")
    return next((run.info.run_id for run in runs if run.info.status == "FINISHED"), None)


def create_step_run(experiment_id: str, entry: str, cache_key: str, parent_run_id: str,
                    params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> str:
    """A RUNNING run for one grid step with its entry point's `params` and the grid's `tags` (provenance such as
    tuned values), already carrying its cache key (so that a killed study's step is found on resume) and nested under
    the study run (launches from worker threads have no active run to take it from)."""
    tags = {**(tags or {}), CACHE_KEY_TAG: cache_key, MLFLOW_PARENT_RUN_ID: parent_run_id,
            MLFLOW_SOURCE_TYPE: "PROJECT", MLFLOW_SOURCE_NAME: str(PROJECT_ROOT), MLFLOW_PROJECT_ENTRY_POINT: entry}
    client = MlflowClient()
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    try:
        client.log_batch(run_id, params=[Param(name, str(value)) for name, value in (params or {}).items()])
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


@main_process_only
def log_metrics(metrics: dict[str, float], step: int) -> None:
    mlflow.log_metrics(metrics, step=step)


def run_summary(run_id: str) -> tuple[float, dict[str, float]]:
    """Wall seconds and metrics of a finished run."""
    run = MlflowClient().get_run(run_id)
    return (run.info.end_time - run.info.start_time) / 1000, run.data.metrics


def download_model(run_id: str, expected_phase: str, destination: Path) -> Path:
    """The `model/` artifact of a FINISHED upstream run, downloaded under `destination` (the caller's work dir)."""
    finished_run(run_id, expected_phase)
    return download_artifact(run_id, MODEL_ARTIFACT, destination)


def download_artifact(run_id: str, artifact_path: str, destination: Path) -> Path:
    """One artifact file or folder of run `run_id`, downloaded under `destination`.

    Raises:
        XstiltsInputError: the run has no such artifact.
    """
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                        dst_path=str(destination)))
    except Exception:
        raise XstiltsInputError(f"run {run_id} has no artifact {artifact_path!r}") from None


class MetricsCallback(TrainerCallback):
    """Logs the Trainer's curves under our key scheme, and its `world_size`; the Trainer's own MLflow integration is
    off because it logs ~200 params whose names can collide with ours and silently lose a whole batch.

    Evaluation keys are `eval_<metric>` for `task`, or `eval_<task>/<metric>` where one evaluation scores several tasks.
    Each evaluation is logged at its training step, and when training ends the selected checkpoint's evaluation is
    logged once more one step past them all: MLflow shows a key's value at its highest step, so a run shows the
    selected value while the key's history keeps the whole curve.
    """

    def __init__(self, task: str, select_lang: str):
        self.task, self.select_lang = task, select_lang

    def on_train_begin(self, args, state, control, **kwargs):
        log_params({"world_size": args.world_size})  # the processes training runs on, as the Trainer set them up

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._log(logs or {}, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        evaluated_steps = [logs["step"] for logs in state.log_history if any(key.startswith("eval_") for key in logs)]
        # A run without checkpoints (one evaluation in all) has no best checkpoint: it ends on the model it evaluated.
        selected_step = state.best_global_step or max(evaluated_steps, default=None)
        selected = {key: value for logs in state.log_history if logs.get("step") == selected_step
                    for key, value in logs.items() if key.startswith("eval_")}
        if selected:  # none where nothing was selected
            self._log(selected, state.global_step + 1)

    def _log(self, logs: dict, step: int) -> None:
        metrics = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            if key.startswith("eval_"):
                task, _, metric = key.removeprefix("eval_").rpartition("/")
                metrics[metric_key("select", task or self.task, self.select_lang, metric)] = value
            else:
                metrics[f"train/{self.task}/{key}"] = value
        if metrics:
            log_metrics(metrics, step)


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def end_active_run(status: str) -> None:
    """Ends this process's innermost run with `status` (KILLED for a pruned tuning trial) inside its `phase_run`,
    which then leaves it as it is."""
    mlflow.end_run(status=status)


def log_to_run(run_id: str, params: dict | None = None, metrics: dict[str, float] | None = None,
               tags: dict | None = None, texts: dict[str, str] | None = None, step: int = 0) -> None:
    """Logs onto run `run_id`, active in this process or not (another worker's study run, a trial run that has
    ended); params already logged are kept, as `log_params` does, tags get the `xlt.` prefix, and `texts` maps
    artifact file names to their contents."""
    client = MlflowClient(default_tracking_uri())
    existing = client.get_run(run_id).data.params
    for key, value in (params or {}).items():
        if key not in existing:
            client.log_param(run_id, key, str(value))
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value, step=step)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, f"{TAG_PREFIX}{key}", str(value))
    for artifact_file, text in (texts or {}).items():
        client.log_text(run_id, text, artifact_file)


def run_status(run_id: str) -> str:
    return MlflowClient(default_tracking_uri()).get_run(run_id).info.status


def terminate_run(run_id: str, status: str) -> None:
    """Ends run `run_id` with `status` (e.g. the runs of a dead tuning worker, which could not end them)."""
    MlflowClient(default_tracking_uri()).set_terminated(run_id, status)


def running_run_ids(tags: dict) -> list[str]:
    """The RUNNING runs, in any experiment, whose `xlt.` tags have the given values."""
    conditions = [f"tags.`{TAG_PREFIX}{key}` = '{value}'" for key, value in tags.items()]
    connect()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=" and ".join([*conditions, "attributes.status = 'RUNNING'"]))
    return [run.info.run_id for run in runs]

"""The only module of `components/` that talks to MLflow: runs, params, metric keys and artifact hand-offs.

Every run is named, tagged and described from what it is (`components.run_identity`; `name_run`, `create_step_run`),
and its experiment described (`describe_experiment`). Metric keys: `<split>/<task>/<lang>/<metric>` (e.g.
`eval/xnli/de/accuracy`, `select/xnli/en/accuracy`), evaluate runs' `chart_key`s `<task>.<metric>/<lang or average>`,
plus `train/<task>/*` curves and `peak_rss_mb` (and `peak_gpu_mb` on a GPU); a multi-task run logs what belongs to its
whole mixture (its training curves, the mean selection metric) under the task name `multitask`. Artifacts: `model/`
(a Hugging Face folder), `predictions/<task>/<split>-<lang>[.<n>-of-<N>].<ext>` with `predictions/<task>/manifest.json`
(`components.predictions`), and for adapter runs `adapters/<name>/`, `heads/<name>/`
and `corpus/composition.json`. Training runs record their model as an MLflow LoggedModel that loads from those
artifacts (`target` runs: a pyfunc model, `components/mlflow_model.py`) or points at them (`log_model_entity`), and
the data they read as dataset inputs (`log_dataset`).
"""

import fcntl
import functools
import hashlib
import json
import os
import re
import resource
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import psutil
import requests
import torch
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import LoggedModelInput, LoggedModelOutput, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils import name_utils
from mlflow.utils.mlflow_tags import (MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_RUN_NAME,
                                      MLFLOW_RUN_NOTE, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE)
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_INPUT_TAG_VALUE_SIZE, MAX_TAG_VAL_LENGTH
from transformers import TrainerCallback

from components import run_identity
from components.errors import Interrupted, XstiltsInputError
from components.settings import PROJECT_ROOT, data_root

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


CPU_THREADS_TAG = "cpu_threads"


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
    # A run nests in the UI only within its parent's experiment; under `mlflow run` (MLFLOW_RUN_ID) the run exists.
    experiment_id = (MlflowClient().get_run(parent_run_id).info.experiment_id
                     if parent_run_id and not os.environ.get("MLFLOW_RUN_ID") else None)
    with stopped_by_signals(), mlflow.start_run(nested=bool(parent_run_id), experiment_id=experiment_id) as run:
        try:
            if parent_run_id:
                mlflow.set_tag(MLFLOW_PARENT_RUN_ID, parent_run_id)
            # CPU results change in their last digits with the thread count (the order of float sums), and so
            # through training by a few items: runs compared across executors or machines say what they ran with.
            threads = str(torch.get_num_threads())
            mlflow.set_tags({f"{TAG_PREFIX}phase": phase, f"{TAG_PREFIX}{CPU_THREADS_TAG}": threads,
                             **{f"{TAG_PREFIX}{k}": v for k, v in (tags or {}).items()}})
            log_params(params)
            name_run(run.info.run_id, phase, params, tags or {})
            describe_experiment(run.info.experiment_id)
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


def fail_running_runs(experiment_id: str, cache_key: str) -> None:
    """Marks FAILED the runs with `cache_key` still RUNNING: a step whose process or node died could not end its
    run, which must not be taken for one in progress."""
    client = MlflowClient()
    for run in client.search_runs([experiment_id], filter_string=f"tags.`{CACHE_KEY_TAG}` = '{cache_key}' and "
                                                                 "attributes.status = 'RUNNING'"):
        client.set_terminated(run.info.run_id, "FAILED")


def create_step_run(experiment_id: str, entry: str, cache_key: str, parent_run_id: str,
                    params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> str:
    """A RUNNING run for one grid step with its entry point's `params` and the grid's `tags` (provenance such as
    tuned values), already named and tagged from what it is (`describe_run`), carrying its cache key (so that a
    killed study's step is found on resume) and nested under the study run (launches from worker threads have no
    active run to take it from)."""
    identity = describe_run(entry, params or {}, {}, parent_run_id)
    tags = {**(tags or {}), **_identity_tags(identity), CACHE_KEY_TAG: cache_key, MLFLOW_PARENT_RUN_ID: parent_run_id,
            MLFLOW_SOURCE_TYPE: "PROJECT", MLFLOW_SOURCE_NAME: str(PROJECT_ROOT), MLFLOW_PROJECT_ENTRY_POINT: entry}
    client = MlflowClient()
    run_id = client.create_run(experiment_id, tags=tags, run_name=identity.name).info.run_id
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
    logged once more one step past them all, unless it is the last evaluation: MLflow shows a key's value at its
    highest step, so a run shows the selected value while the key's history keeps the whole curve, each evaluation
    once.
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
        if selected_step == max(evaluated_steps, default=None):  # already the value shown (or nothing selected)
            return
        selected = {key: value for logs in state.log_history if logs.get("step") == selected_step
                    for key, value in logs.items() if key.startswith("eval_")}
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


def get_run(run_id: str):
    """The MLflow run `run_id`: its info (status, start time) and data (params, tags, metrics)."""
    return MlflowClient(default_tracking_uri()).get_run(run_id)


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


# Run identity: names, comparison tags and descriptions (`components.run_identity`) set on the runs.

STUDY_TAG = f"{TAG_PREFIX}study"
REUSED_RUNS_TAG = f"{TAG_PREFIX}reused_runs"
MAX_LINKED_REUSED_RUNS = 50  # links in the description; the rest are in grid.json
# The params an upstream run hands on to the identity of the runs that read it (ours: theirs), when absent.
_FROM_TARGET_RUN = {name: name for name in ("task", "method", "model", "seed", "intermediate_task",
                                            "intermediate_source_lang")}
_FROM_INTERMEDIATE_RUN = {"intermediate_task": "task", "intermediate_source_lang": "source_lang"}
_FROM_ENCODER_RUN = {"encoder_task": "task", "method": "method", "model": "model", "seed": "seed"}
# MLflow names a run it is given no name for `<predicate>-<noun>-<number>` from these lists
# (`mlflow.utils.name_utils`); such a name is replaced, a name given by hand (`mlflow run --run-name`) is kept.
_GENERATED_NAME = re.compile(rf"^({'|'.join(name_utils._GENERATOR_PREDICATES)})-"
                             rf"({'|'.join(name_utils._GENERATOR_NOUNS)})-\d+$")
EXPERIMENT_DESCRIPTION = (
    "xstilts runs, one per phase step: `intermediate`, `target`, `evaluate` (named `eval · <task> · <method> · "
    "from <intermediate>(<source>) · s<seed>`), `lang_adapter`, `tune`, each study's `main` run with its steps and "
    "its `analysis` run as children. Group the runs table by the tag `xlt.configuration` (method · model · "
    "intermediate task), filter by `xlt.target_task`, `xlt.study`, `xlt.seed`; an evaluate run's chart section "
    "`<task>.<metric>` shows one chart per language and the averages `avg`, `avg_no_en`, `avg_low_resource`. "
    "See docs/tracking-ui.md.")


def _upstream_runs(phase: str, params: dict) -> list[tuple[str, object]]:
    """(role, run) of the upstream runs `params` name that the store holds (a wrong id is the entry point's error
    to report, not the name's)."""
    client = MlflowClient()
    found = []
    for role, run_id in run_identity.upstream_run_ids(phase, params):
        try:
            found.append((role, client.get_run(run_id)))
        except Exception:
            continue
    return found


def _params_with_upstream(phase: str, params: dict, upstream: list[tuple[str, object]]) -> dict[str, str]:
    """`params` completed from the upstream runs: a grid step's evaluate run names only its target run, a target run
    only its intermediate run, until the entry point logs the rest."""
    completed = {key: str(value) for key, value in params.items()}
    for role, run in upstream:
        theirs = run.data.params
        if role == "target run":
            mapping = _FROM_TARGET_RUN
        elif role == "intermediate run" and phase != "lang_adapter":
            mapping = _FROM_INTERMEDIATE_RUN
        elif role == "encoder run":
            is_intermediate = run.data.tags.get(f"{TAG_PREFIX}phase") == "intermediate"
            mapping = {**_FROM_ENCODER_RUN, **(_FROM_INTERMEDIATE_RUN if is_intermediate else
                                               {"intermediate_task": "intermediate_task",
                                                "intermediate_source_lang": "intermediate_source_lang"})}
        else:
            continue
        for ours, key in mapping.items():
            if not completed.get(ours) and theirs.get(key):
                completed[ours] = theirs[key]
    return completed


def describe_run(phase: str, params: dict, tags: dict, parent_run_id: str = "",
                 study: str = "") -> run_identity.RunIdentity:
    """The name, comparison tags and description of a `phase` run with `params` and `xlt.` `tags` (unprefixed); the
    study is `study`, else the parent run's."""
    upstream = _upstream_runs(phase, params)
    if not study and parent_run_id:
        try:
            study = MlflowClient().get_run(parent_run_id).data.tags.get(STUDY_TAG, "")
        except Exception:
            study = ""
    links = [run_identity.Upstream(role, run.info.run_id, run.info.experiment_id,
                                   run.data.tags.get(MLFLOW_RUN_NAME, "")) for role, run in upstream]
    return run_identity.identity(phase, _params_with_upstream(phase, params, upstream), study,
                                 str(tags.get("tune_trial", "")), links)


def _identity_tags(identity: run_identity.RunIdentity) -> dict[str, str]:
    return {**{f"{TAG_PREFIX}{key}": value for key, value in identity.tags.items()},
            MLFLOW_RUN_NOTE: identity.description}


def keeps_given_name(current: str, phase: str) -> bool:
    """Whether a run's `current` name was given by hand: neither empty, nor MLflow's random one, nor ours."""
    return bool(current) and not _GENERATED_NAME.match(current) and not current.startswith(
        run_identity.name_prefix(phase) + run_identity.SEPARATOR)


@main_process_only
def name_run(run_id: str, phase: str, params: dict, tags: dict) -> None:
    """Names, tags and describes run `run_id` from what it is (its params, completed from its upstream runs and
    those it already has: a grid step's run carries its study); a name given by hand is kept."""
    client = MlflowClient()
    run = client.get_run(run_id)
    existing = run.data.tags
    identity = describe_run(phase, {**run.data.params, **params}, tags, existing.get(MLFLOW_PARENT_RUN_ID, ""),
                            existing.get(STUDY_TAG, ""))
    new_tags = _identity_tags(identity)
    if not keeps_given_name(existing.get(MLFLOW_RUN_NAME, ""), phase):
        new_tags[MLFLOW_RUN_NAME] = identity.name
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in new_tags.items()])


def describe_experiment(experiment_id: str) -> None:
    """Gives the experiment a description (what its runs are and how to compare them) and the tag `xlt.suite`,
    unless it has a description already (a user's own is kept)."""
    client = MlflowClient()
    if MLFLOW_RUN_NOTE not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, MLFLOW_RUN_NOTE, EXPERIMENT_DESCRIPTION)
        client.set_experiment_tag(experiment_id, f"{TAG_PREFIX}suite", "xstilts")


def link_reused_runs(parent_run_id: str, run_ids: list[str]) -> None:
    """Links, on a study's `main` run, the FINISHED runs it reused instead of running its steps again (a rerun of a
    finished study): tag `xlt.reused_runs` (their ids) and a list of links appended to its description. They stay
    the children of the study run that made them (a run has one parent)."""
    if not run_ids:
        return
    client = MlflowClient(default_tracking_uri())
    parent = client.get_run(parent_run_id)
    links = []
    for run_id in run_ids[:MAX_LINKED_REUSED_RUNS]:
        reused = client.get_run(run_id)
        links.append("- " + run_identity.Upstream("", run_id, reused.info.experiment_id,
                                                  reused.data.tags.get(MLFLOW_RUN_NAME, "")).link())
    if len(run_ids) > MAX_LINKED_REUSED_RUNS:
        links.append(f"- and {len(run_ids) - MAX_LINKED_REUSED_RUNS} more: every step's run id is in grid.json")
    ids = ",".join(run_ids)
    note = parent.data.tags.get(MLFLOW_RUN_NOTE, "")
    client.log_batch(parent_run_id, tags=[
        # a tag holds at most MAX_TAG_VAL_LENGTH characters: a large study's ids would be cut mid-id
        RunTag(REUSED_RUNS_TAG, ids if len(ids) <= MAX_TAG_VAL_LENGTH else f"{len(run_ids)} runs: see grid.json"),
        RunTag(MLFLOW_RUN_NOTE, note + f"\n\nReused {len(run_ids)} finished run(s) of an earlier pass of this "
                                       "study:\n" + "\n".join(links))])


def study_run_id(experiment_id: str, study: str) -> str:
    """The newest `main` run of `study` in the experiment, or "" if there is none."""
    runs = MlflowClient(default_tracking_uri()).search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_PREFIX}phase` = 'main' and tags.`{STUDY_TAG}` = '{study}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else ""


def study_of_run(run_id: str) -> tuple[str, str]:
    """(experiment id, study) of run `run_id`; the study is "" where it has none."""
    run = MlflowClient(default_tracking_uri()).get_run(run_id)
    return run.info.experiment_id, run.data.tags.get(STUDY_TAG, "")


# Results where the UI compares them: one chart section per task and metric.


def chart_key(task: str, metric: str, lang_or_average: str) -> str:
    """`<task>.<metric>/<lang>`: the MLflow UI makes a chart section of each key prefix before the first `/`, so a
    task's languages (and its averages `avg`, `avg_no_en`, `avg_low_resource`) share one section."""
    return f"{task}.{metric}/{lang_or_average}"


@main_process_only
def log_evaluation(task: str, lang: str, metrics: dict[str, float], n_examples: int) -> None:
    """One language's scores: `eval/<task>/<lang>/<metric>` (what the analysis reads), the same values under
    `chart_key`, and `eval_examples/<task>/<lang>/n`."""
    mlflow.log_metrics({**{metric_key("eval", task, lang, name): value for name, value in metrics.items()},
                        **{chart_key(task, name, lang): value for name, value in metrics.items()},
                        metric_key("eval_examples", task, lang, "n"): n_examples})


@main_process_only
def log_task_averages(task: str, averages: dict[str, tuple[tuple[str, ...], dict[str, float]]],
                      model_id: str | None = None) -> None:
    """`components.evaluation.task_averages` as metrics `<task>.<metric>/<average>` (linked to the scored model
    where it has one) and the languages of each as the param `<average>_langs/<task>`."""
    for average, (langs, metrics) in averages.items():
        mlflow.log_metrics({chart_key(task, name, average): value for name, value in metrics.items()},
                           model_id=model_id)
    log_params({f"{average}_langs/{task}": ",".join(langs) for average, (langs, _) in averages.items()})


# Datasets and models as MLflow entities: the Dataset and Models columns, and the lineage between runs.

DATASET_CONTEXTS = ("training", "validation", "testing")


def examples_digest(examples) -> str:
    """A fingerprint of the examples themselves (their text and labels, in order)."""
    return hashlib.sha256(json.dumps(list(examples), sort_keys=True, ensure_ascii=False,
                                     default=str).encode()).hexdigest()[:12]


@main_process_only
def log_dataset(task: str, split: str, lang: str, items: str, examples, context: str) -> None:
    """Logs the examples a run reads as an MLflow dataset input named `<task>-<split>-<lang>`, from the data bundle
    (its folder is the source), with their digest and the tags split, lang, items (0-based positions in the split's
    file, or the pool they are the first of) and n_items; `context` is one of `DATASET_CONTEXTS`."""
    with warnings.catch_warnings():  # a local folder matches two registered source kinds, both "local"
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(str(data_root()))
    dataset = MetaDataset(source, name=f"{task}-{split}-{lang}",
                          digest=examples_digest(examples))
    tags = {"task": task, "split": split, "lang": lang, "items": _shortened_items(items), "n_items": str(len(examples))}
    try:
        mlflow.log_input(dataset, context=context, tags=tags)
    except MlflowException as error:
        # Two steps logging the same new dataset at once: the SQL store checks for it, then inserts it, and the
        # slower insert breaks the unique constraint. Logged again, the dataset is found and only linked.
        if "unique constraint" not in str(error).lower():
            raise
        mlflow.log_input(dataset, context=context, tags=tags)


def _shortened_items(items: str) -> str:
    """`items` within MLflow's limit on an input tag's value (interleaved item ranges can be thousands of
    characters): the leading ranges, then how many there are in all (the run's `protocol_*_items` params keep all)."""
    if len(items) <= MAX_INPUT_TAG_VALUE_SIZE:
        return items
    ranges = items.split(",")
    suffix = f",... ({len(ranges)} ranges in all)"
    shown = items[: MAX_INPUT_TAG_VALUE_SIZE - len(suffix)].rpartition(",")[0]
    return shown + suffix


def log_training_inputs(stages, train_subset, select_subset, lang: str) -> None:
    """The training and selection examples of each training stage (`components.data.TrainingData`) after the caps
    (`train_subset`, `select_subset`: a `TrainConfig`'s) as dataset inputs, each named by the task and split it was
    read from (a dev-split stage cuts both from the task's dev split; a held-out selection set, from its train
    split)."""
    for stage in stages:
        train, select = train_subset(stage.train), select_subset(stage.select)
        dev_split = stage.params.get("data_protocol") == "dev-split"
        train_task = stage.params.get("train_source", stage.task)
        select_task, _, select_split = stage.params.get("select_source", "dev").rpartition(" ")
        log_dataset(train_task, "dev" if dev_split else "train", lang,
                    _first_of(len(train), stage.params.get("protocol_train_items", "")), train, "training")
        log_dataset(select_task or stage.task, select_split, lang,
                    _first_of(len(select), stage.params.get("protocol_select_items", "")), select, "validation")


def _first_of(n: int, pool: str) -> str:
    return f"first {n} of {pool}" if pool else f"0-{n - 1}"


LOGGED_MODEL_TYPE = "xstilts-encoder"
# The pyfunc "model from code" that loads a run's own artifacts; requirements.txt is its environment (naming it
# spares MLflow inferring one, which loads the model in a subprocess).
MLFLOW_MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


@main_process_only
def log_model_entity(artifact_paths: list[str], model_config: dict | None = None) -> str:
    """Records the active run's trained model as an MLflow LoggedModel (the runs table's Models column, the model's
    own page, registration) whose weights stay where the run logged them (`artifact_paths`: `model/`, or an adapter
    run's `adapters/` and `heads/`): not a second copy. With `model_config`
    (`components.trained_models.mlflow_model_config`), a pyfunc model that `mlflow.pyfunc.load_model` loads from
    those artifacts and predicts with (`components/mlflow_model.py`); without, an external model that only points at
    them (a language adapter, an intermediate run's encoder). Returns its id."""
    run_id = active_run_id()
    client = MlflowClient()
    run_name = client.get_run(run_id).data.tags.get(MLFLOW_RUN_NAME, "")
    name = re.sub(r"[^\w.-]+", "-", run_name).strip("-") or run_id
    tags = {f"{TAG_PREFIX}artifacts": ",".join(f"runs:/{run_id}/{path}" for path in artifact_paths)}
    if model_config:
        # log_model links the model to the run as its output itself.
        return mlflow.pyfunc.log_model(name=name, python_model=str(MLFLOW_MODEL_CODE), model_config=model_config,
                                       pip_requirements=str(PROJECT_ROOT / "requirements.txt"),
                                       model_type=LOGGED_MODEL_TYPE, tags=tags).model_id
    model = mlflow.create_external_model(name=name, source_run_id=run_id, model_type=LOGGED_MODEL_TYPE, tags=tags)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model.model_id


def trained_model_id(run_id: str) -> str | None:
    """The LoggedModel that run `run_id` trained (`log_model_entity`), or None (runs from before it)."""
    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    models = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{run_id}'")
    return models[0].model_id if models else None


@main_process_only
def log_model_input(model_id: str | None) -> None:
    """Records that the active run reads the LoggedModel `model_id` (an evaluate run, its target run's model)."""
    if model_id:
        mlflow.log_input(model=LoggedModelInput(model_id))


@main_process_only
def log_table(columns, artifact_file: str) -> None:
    """`columns` (a mapping of column lists, or a DataFrame) as an MLflow table the UI shows (`<name>.json`)."""
    mlflow.log_table(columns, artifact_file)


def selection_of_evaluate_run(run_id: str, task: str, metric: str) -> tuple[str, float | None]:
    """(its target run, the English selection score `select/<task>/en/<metric>` it carries) of an evaluate run;
    the score is None for a run that carries none (retrieval without training, runs from before it was copied)."""
    run = MlflowClient(default_tracking_uri()).get_run(run_id)
    return run.data.params.get("train_run_id", ""), run.data.metrics.get(metric_key("select", task, "en", metric))


def register_model(model_id: str, name: str) -> str:
    """Registers the LoggedModel `model_id` as a new version of the registered model `name`; returns the version."""
    return mlflow.register_model(f"models:/{model_id}", name).version

"""The `tune` entry point on the tiny model: studies, trial runs, pruning, storages, workers and bad input."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mlflow
import optuna
import psutil
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

import pipelines.cli
import tuning.storage
import tuning.study
import tuning.trial
from components.settings import PROJECT_ROOT
from pipelines import tune
from tuning.best_params import tuned_values

FAST = ["--task", "xnli", "--protocol", "dev-split", "--epochs", "1", "--batch-size", "16", "--max-length", "64",
        "--max-train-examples", "48", "--evals-per-epoch", "2"]
WORKER_HOOKS = Path(__file__).parent / "worker_hooks"
LR_SPACE = "{lr: {low: 1.0e-5, high: 1.0e-3, log: true}}"


def invoke(args):
    result = CliRunner().invoke(tune.main, args, catch_exceptions=False)
    return result.exit_code, result.output


def tune_args(tiny_model_dir, tmp_path, *extra):
    return ["--model", str(tiny_model_dir), *FAST, "--space", LR_SPACE, "--storage", str(tmp_path / "journal.log"),
            "--best-params-dir", str(tmp_path / "best"), *extra]


def runs_of(study: str):
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`xlt.tune_study` = '{study}'")


def test_study_is_one_run_with_a_child_run_per_trial(tracking_store, tiny_model_dir, tmp_path):
    code, out = invoke(tune_args(tiny_model_dir, tmp_path, "--n-trials", "3", "--study-name", "s1"))
    assert code == 0, out
    runs = runs_of("s1")
    study_run = next(run for run in runs if run.data.tags["xlt.tune_role"] == "study")
    trial_runs = [run for run in runs if run.data.tags["xlt.tune_role"] == "trial"]
    assert study_run.info.status == "FINISHED"
    assert sorted(int(run.data.tags["xlt.tune_trial"]) for run in trial_runs) == [0, 1, 2]
    assert {run.data.tags["mlflow.parentRunId"] for run in trial_runs} == {study_run.info.run_id}
    study = optuna.load_study(study_name="s1", storage=journal(tmp_path))
    best = study.best_trial
    assert study_run.data.params["best/lr"] == str(best.params["lr"])
    assert study_run.data.metrics["best_value"] == best.value
    written = yaml.safe_load((tmp_path / "best" / f"xnli.full.{tiny_model_dir.name}.none.yaml").read_text())
    assert written["params"] == best.params and written["complete"] is True
    assert tuned_values("xnli", "full", str(tiny_model_dir), "none", tmp_path / "best")[0] == best.params
    best_run = MlflowClient().get_run(written["best_run_id"])
    assert best_run.data.metrics["objective"] == best.value
    assert float(best_run.data.params["lr"]) == best.params["lr"]
    history = sorted(MlflowClient().get_metric_history(best_run.info.run_id, "select/xnli/en/accuracy"),
                     key=lambda point: point.step)
    # --evals-per-epoch 2: mid-epoch and the end; the Trainer keeps the first of equal bests, and a mid-epoch
    # selection is logged once more one step past them (what the run shows), a selection at the end is not
    mid, end = history[0].value, history[1].value
    assert [point.step for point in history] == ([2, 3] if end > mid else [2, 3, 4])
    assert history[-1].value == max(mid, end)
    assert best.value == max(point.value for point in history) == best_run.data.metrics["select/xnli/en/accuracy"]

    code, out = invoke(tune_args(tiny_model_dir, tmp_path, "--n-trials", "3", "--study-name", "s1", "--space",
                                 "{lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"))
    assert code == 2 and "created with another space" in out, out


def test_pruned_trials_end_killed_and_failed_trials_failed(tracking_store, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(tuning.study.PRUNERS, "median", lambda: optuna.pruners.ThresholdPruner(lower=101))
    code, out = invoke(tune_args(tiny_model_dir, tmp_path, "--n-trials", "2", "--study-name", "pruned"))
    assert code == 0, out
    trial_runs = [run for run in runs_of("pruned") if run.data.tags["xlt.tune_role"] == "trial"]
    assert [run.info.status for run in trial_runs] == ["KILLED", "KILLED"]
    assert "none (no trial completed)" in out

    def broken_training(*args, **kwargs):
        raise RuntimeError("the trainer broke")

    monkeypatch.setattr(pipelines.cli, "train", broken_training)
    result = CliRunner().invoke(tune.main, tune_args(tiny_model_dir, tmp_path, "--n-trials", "2",
                                                     "--study-name", "broken"))
    assert result.exit_code == 1 and "the trainer broke" in str(result.exception)
    statuses = {run.data.tags["xlt.tune_role"]: run.info.status for run in runs_of("broken")}
    assert statuses == {"study": "FAILED", "trial": "FAILED"}
    study = optuna.load_study(study_name="broken", storage=journal(tmp_path))
    assert [trial.state.name for trial in study.trials] == ["FAIL", "WAITING"]


def test_the_objective_reads_english_dev_only(tracking_store, tiny_model_dir, tmp_path, loaded_splits):
    loads = loaded_splits
    # XNLI's dev-split protocol cuts one dev pool that exists in 15 languages; UD-POS trains on its English train split.
    for task, protocol in (("xnli", "dev-split"), ("udpos", "standard")):
        args = tune_args(tiny_model_dir, tmp_path, "--n-trials", "1", "--study-name", task)
        code, out = invoke([*args, "--task", task, "--protocol", protocol])
        assert code == 0, out
    assert {(task, split) for task, split, _ in loads} == {("xnli", "dev"), ("udpos", "train"), ("udpos", "dev")}
    assert {lang for _, _, lang in loads} == {"en"}


def journal(tmp_path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("extra, message", [
    (["--space", "{lr: {low: 1.0e-4, high: 1.0e-4}}"], "the range 0.0001..0.0001 is empty"),
    (["--space", "{lr: {low: 1.0e-3, high: 1.0e-5, log: true}}"], "the range 0.001..1e-05 is inverted"),
    (["--space", "{task_reduction_factor: {choices: []}}"], "choices must be a non-empty list"),
    (["--space", "{lrr: {low: 1.0e-5, high: 1.0e-3}}"], "unknown parameter 'lrr'"),
    (["--space", "{seed: {choices: [1, 2]}}"], "seed is fixed for a whole study"),
    (["--space", "{precision: {low: 1, high: 2}}"], "precision is not numeric"),
    (["--storage", "postgresql+psycopg://nobody@127.0.0.1:PORT/optuna"], "cannot reach the Optuna storage"),
    (["--storage", "sqlite:///TMP/optuna.db", "--workers", "2"], "SQLite .* serves one Optuna worker only"),
    (["--n-trials", "0"], "n_trials must be at least 1"),
])
def test_bad_input(tracking_store, tiny_model_dir, tmp_path, extra, message):
    extra = [value.replace("PORT", str(unused_port())).replace("TMP", str(tmp_path)) for value in extra]
    code, out = invoke([*tune_args(tiny_model_dir, tmp_path), *extra])
    assert_clean_failure(code, out, message)


def test_a_study_with_another_direction_is_refused(tracking_store, tiny_model_dir, tmp_path):
    optuna.create_study(study_name="taken", storage=journal(tmp_path), direction="minimize")
    code, out = invoke(tune_args(tiny_model_dir, tmp_path, "--study-name", "taken"))
    assert_clean_failure(code, out, "study 'taken' .* exists with direction minimize")


def test_a_second_worker_on_sqlite_is_refused(tracking_store, tiny_model_dir, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = tune_args(tiny_model_dir, tmp_path, "--storage", storage, "--study-name", "single", "--n-trials", "2")
    with monkeypatch.context() as patch:  # a first worker creates the study and queues its budget, running nothing
        patch.setattr(tuning.study.Worker, "run", lambda self: [])
        code, out = invoke(args)
        assert code == 0, out
    trial = optuna.load_study(study_name="single", storage=storage).ask()  # a live worker (this process) claims one
    trial.set_user_attr(tuning.study.WORKER_ATTR, tuning.storage.worker_id())
    code, out = invoke(args)
    assert_clean_failure(code, out, "SQLite .* serves one Optuna worker only")


def assert_clean_failure(code, out, message):
    assert code == 2, out
    assert re.search(message, out), out
    assert out.count("xstilts: error:") == 1
    statuses = {run.info.status for run in mlflow.search_runs(search_all_experiments=True, output_format="list")}
    assert "RUNNING" not in statuses


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (scripts/postgres.sh installs it when missing), for the whole session."""
    directory = tempfile.mkdtemp(prefix="xstilts-pg-")  # under /tmp: the server's user must reach it
    script = str(PROJECT_ROOT / "scripts" / "postgres.sh")
    started = subprocess.run(["bash", script, "start", directory, str(unused_port())], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip()
    subprocess.run(["bash", script, "stop", directory], check=True)
    shutil.rmtree(directory, ignore_errors=True)


def start_worker(args, hold_dir: Path) -> subprocess.Popen:
    """A tune worker whose trials, and those of the workers it starts, wait once training has begun until
    `release_trials(hold_dir)` (tests/worker_hooks/sitecustomize.py): a kill then lands mid-trial on any machine."""
    environment = tune.worker_environment()
    environment["PYTHONPATH"] = os.pathsep.join([str(WORKER_HOOKS), environment["PYTHONPATH"]])
    environment["XSTILTS_TEST_HOLD_DIR"] = str(hold_dir)
    return subprocess.Popen([sys.executable, "-m", "pipelines.tune", *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def release_trials(hold_dir: Path) -> None:
    (hold_dir / "release").touch()


def poll_until(find, process: subprocess.Popen, timeout_s: float = 600):
    """The first true value of `find()` (a missing study counts as false), polled while `process` lives."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            found = find()
        except KeyError:  # the study is not created yet
            found = None
        if found is not None and found is not False:
            return found
        time.sleep(0.3)
    raise AssertionError(f"nothing found within {timeout_s} s")


def kill_mid_trial(load_study, victim: int, process: subprocess.Popen, hold_dir: Path) -> int:
    """Kills process `victim` once it trains a trial (its run started), then lets the other workers' trials go on;
    returns the killed trial's number."""
    def victims_trial():
        return next((trial.number for trial in load_study().get_trials(states=(optuna.trial.TrialState.RUNNING,))
                     if f":{victim}:" in trial.user_attrs.get(tuning.study.WORKER_ATTR, "")
                     and tuning.trial.TRIAL_RUN_ATTR in trial.user_attrs), None)

    number = poll_until(victims_trial, process)
    os.kill(victim, signal.SIGKILL)
    release_trials(hold_dir)
    return number


def assert_survived_the_kill(study: optuna.Study, killed_trial: int, n_trials: int, study_name: str):
    """N finished trials, none lost or run twice; the killed one FAIL with a finished retry; no run left RUNNING."""
    states = [trial.state.name for trial in study.trials]
    assert states.count("COMPLETE") == n_trials and states.count("FAIL") == 1, states
    assert study.trials[killed_trial].state.name == "FAIL"
    retries = [trial for trial in study.trials if trial.system_attrs.get("failed_trial") == killed_trial]
    assert [retry.state.name for retry in retries] == ["COMPLETE"]
    assert retries[0].params == study.trials[killed_trial].params
    runs = runs_of(study_name)
    assert "RUNNING" not in {run.info.status for run in runs}
    trial_runs = [run for run in runs if run.data.tags["xlt.tune_role"] == "trial"]
    finished = sorted(int(run.data.tags["xlt.tune_trial"]) for run in trial_runs if run.info.status == "FINISHED")
    assert finished == sorted(trial.number for trial in study.trials if trial.state.name == "COMPLETE")
    assert [run.info.status for run in trial_runs if run.data.tags["xlt.tune_trial"] == str(killed_trial)] == ["FAILED"]
    study_run = next(run for run in runs if run.data.tags["xlt.tune_role"] == "study")
    assert study_run.info.status == "FINISHED" and study_run.data.metrics["trials_complete"] == n_trials


def test_two_workers_on_postgres_survive_a_killed_worker(tracking_store, tiny_model_dir, tmp_path, postgres_url):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    args = [*tune_args(tiny_model_dir, tmp_path, "--n-trials", "4", "--study-name", name, "--pruner", "none",
                       "--storage", postgres_url, "--heartbeat-s", "2"), "--max-train-examples", "160"]
    creator = start_worker(args, tmp_path)
    storage = optuna.storages.RDBStorage(postgres_url)  # one connection pool for all the polling
    load = lambda: optuna.load_study(study_name=name, storage=storage)
    poll_until(lambda: tuning.study.STUDY_RUN_ATTR in load().user_attrs, creator)
    joiner = start_worker(args, tmp_path)  # a separate process, as on another machine: it joins by name
    killed = kill_mid_trial(load, joiner.pid, joiner, tmp_path)
    joiner.communicate()
    out, _ = creator.communicate(timeout=900)
    assert creator.returncode == 0, out
    assert_survived_the_kill(load(), killed, 4, name)
    worker_runs = [run for run in runs_of(name) if run.data.tags["xlt.tune_role"] == "worker"]
    assert [run.info.status for run in worker_runs] == ["FAILED"]  # the killed joiner's own run


def test_local_workers_on_the_journal_survive_a_killed_worker(tracking_store, tiny_model_dir, tmp_path):
    args = [*tune_args(tiny_model_dir, tmp_path, "--n-trials", "4", "--study-name", "local", "--pruner", "none",
                       "--workers", "2"), "--max-train-examples", "160"]
    parent = start_worker(args, tmp_path)
    load = lambda: optuna.load_study(study_name="local", storage=journal(tmp_path))
    helper = poll_until(lambda: next((child.pid for child in psutil.Process(parent.pid).children()
                                      if "pipelines.tune" in child.cmdline()), None), parent)
    # Two workers on this machine share its cores: each trains on half of them (unless the caller set
    # OMP_NUM_THREADS), the helper by OMP_NUM_THREADS.
    shared = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // 2))
    assert psutil.Process(helper).environ().get("OMP_NUM_THREADS") == shared
    killed = kill_mid_trial(load, helper, parent, tmp_path)
    out, _ = parent.communicate(timeout=900)
    assert parent.returncode == 0, out
    assert f"worker process {helper} failed" in out
    assert_survived_the_kill(load(), killed, 4, "local")
    assert {run.data.params["cpu_threads"] for run in runs_of("local")
            if run.data.tags["xlt.tune_role"] != "trial"} == {shared}


def test_every_tunable_option_is_a_target_parameter_of_the_mlproject():
    """The grid passes tuned values to `target` as MLproject parameters."""
    declared = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]["target"]["parameters"]
    assert {"lr", "task_reduction_factor", "warmup_ratio", "epochs"} <= set(tune.tunable_options()) <= set(declared)

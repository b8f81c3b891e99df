"""`main` end to end with real entry points: nested child runs, and a rerun that trains nothing."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from components.settings import PROJECT_ROOT
from pipelines import main


def test_main_runs_the_grid_as_child_runs_and_a_rerun_trains_nothing(tracking_store, tiny_model_dir, tmp_path,
                                                                      monkeypatch):
    # The MLproject commands run `python -m ...`: this interpreter's environment must come first on PATH.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    fast = "epochs: 1, batch_size: 16, max_length: 64, max_train_examples: 32"
    path = tmp_path / "study.yaml"
    path.write_text(f"model: {tiny_model_dir}\nseeds: [3]\nmethods: [full]\n"
                    f"intermediate: [none, {{task: anli, {fast}}}]\n"
                    f"targets: [{{task: xnli, {fast}, evaluate: {{langs: 'en,sw'}}}}]\n", encoding="utf-8")
    result = CliRunner().invoke(main.main, ["--config", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parent = next(run for run in runs if run.data.tags["xlt.phase"] == "main")
    children = [run for run in runs if run is not parent]
    assert sorted(run.data.tags["xlt.phase"] for run in children) == ["evaluate", "evaluate", "intermediate",
                                                                       "target", "target"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    by_id = {run.info.run_id: run for run in children}
    stilts = next(run for run in children if run.data.tags["xlt.phase"] == "target" and run.data.params["init_run_id"])
    assert by_id[stilts.data.params["init_run_id"]].data.tags["xlt.phase"] == "intermediate"
    assert stilts.data.params["seed"] == "3"
    evaluated = next(run for run in children if run.data.params.get("train_run_id") == stilts.info.run_id)
    assert set(evaluated.data.metrics) >= {"eval/xnli/en/accuracy", "eval/xnli/sw/accuracy"}
    # The entry point's MLproject params, as `mlflow run` logs them: the config's, and the declared defaults.
    assert {name: evaluated.data.params.get(name) for name in ("langs", "batch_size", "eval_precision",
                                                                "lang_adapter_fallback")} == {
        "langs": "en,sw", "batch_size": "64", "eval_precision": "fp32", "lang_adapter_fallback": ""}

    again = CliRunner().invoke(main.main, ["--config", str(path)], catch_exceptions=False)
    assert again.exit_code == 0 and "done 0, cached 5" in again.output, again.output
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == len(runs) + 1


STEP_LINE = re.compile(r"^\[\s*\d+/\s*\d+\] (done|cached)\s+(.+?)  \((\w{32})\)$", re.MULTILINE)
TIMING = re.compile(r"runtime|per_second|seconds|peak_|^grid/")


def test_a_grid_killed_mid_run_redoes_only_unfinished_steps_and_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    """kill -9 of the whole process tree once two steps finished; the rerun reuses those two, marks what the kill left
    RUNNING as FAILED, and every step's metrics equal those of an uninterrupted study with the same seeds."""
    fast = "epochs: 1, batch_size: 16, max_length: 64, max_train_examples: 32"
    config = tmp_path / "study.yaml"
    config.write_text(f"model: {tiny_model_dir}\nseeds: [3]\nmethods: [full]\n"
                      f"intermediate: [none, {{task: anli, {fast}}}]\n"
                      f"targets: [{{task: xnli, {fast}, evaluate: {{langs: 'en,sw'}}}}]\n", encoding="utf-8")
    reference = run_grid(config, tmp_path / "uninterrupted")
    assert reference.returncode == 0, reference.stdout

    store = tmp_path / "killed"
    killed = start_grid(config, store)
    client = MlflowClient(store_uri(store))
    deadline = time.monotonic() + 600
    while len(finished_steps(client)) < 2 or untagged_running_steps(client):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0]
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    survivors = set(finished_steps(client))

    resumed = run_grid(config, store)
    assert resumed.returncode == 0, resumed.stdout
    steps = {label: (status, run_id) for status, label, run_id in STEP_LINE.findall(resumed.stdout)}
    assert len(steps) == 5, resumed.stdout
    assert {run_id for status, run_id in steps.values() if status == "cached"} == survivors
    runs = client.search_runs([exp.experiment_id for exp in client.search_experiments()])
    assert "RUNNING" not in {run.info.status for run in runs}

    reference_ids = {label: run_id for _status, label, run_id in STEP_LINE.findall(reference.stdout)}
    reference_client = MlflowClient(store_uri(tmp_path / "uninterrupted"))
    for label, (_status, run_id) in steps.items():
        assert comparable_metrics(client, run_id) == comparable_metrics(reference_client, reference_ids[label]), label


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def start_grid(config: Path, folder: Path) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    environment = {**os.environ, "MLFLOW_TRACKING_URI": store_uri(folder), "PYTHONPATH": str(PROJECT_ROOT),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.main", "--config", str(config)], cwd=folder,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: the kill reaches every step process


def run_grid(config: Path, folder: Path) -> subprocess.CompletedProcess:
    process = start_grid(config, folder)
    stdout, _ = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout)


def finished_steps(client: MlflowClient) -> list[str]:
    runs = client.search_runs([exp.experiment_id for exp in client.search_experiments()],
                              "attributes.status = 'FINISHED'")
    return [run.info.run_id for run in runs if run.data.tags.get("xlt.phase") != "main"]


def untagged_running_steps(client: MlflowClient) -> list[str]:
    """Step runs that `mlflow.projects.run` has created but the grid has not tagged yet: a kill in that instant
    leaves a run that no later study can recognise as its own."""
    runs = client.search_runs([exp.experiment_id for exp in client.search_experiments()],
                              "attributes.status = 'RUNNING'")
    return [run.info.run_id for run in runs if run.data.tags.get("xlt.phase") != "main"
            and "xlt.cache_key" not in run.data.tags]


def comparable_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    """Every metric but wall-clock timings and memory, which differ between any two runs."""
    return {key: value for key, value in client.get_run(run_id).data.metrics.items() if not TIMING.search(key)}

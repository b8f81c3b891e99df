"""`main` end to end with real entry points: nested child runs, and a rerun that trains nothing."""

import os
import sys
from pathlib import Path

import mlflow
from click.testing import CliRunner

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

    again = CliRunner().invoke(main.main, ["--config", str(path)], catch_exceptions=False)
    assert again.exit_code == 0 and "done 0, cached 5" in again.output, again.output
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == len(runs) + 1

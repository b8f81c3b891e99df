import os
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from components.errors import XstiltsInputError
from pipelines import main
from pipelines.main import read_chain


def write_config(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_the_shipped_demo_chains():
    from components.settings import PROJECT_ROOT
    chain = read_chain(PROJECT_ROOT / "configs" / "demo.yaml")
    baseline = read_chain(PROJECT_ROOT / "configs" / "demo-baseline.yaml")
    assert list(chain) == ["intermediate", "target", "evaluate"] and list(baseline) == ["target", "evaluate"]
    assert chain["intermediate"]["task"] == "anli" and chain["target"] == baseline["target"]


@pytest.mark.parametrize("text, message", [
    ("chain:\n  target:\n    lrr: 1\n", "unknown parameter\\(s\\) lrr for phase target"),
    ("chain:\n  pretrain: {}\n  target: {}\n", "unknown phase\\(s\\) pretrain"),
    ("chain:\n  intermediate: {}\n", "at least a `target:` phase"),
    ("chain: [unclosed\n", "not valid YAML"),
])
def test_bad_configs_name_the_file_and_the_problem(tmp_path, text, message):
    path = write_config(tmp_path, text)
    with pytest.raises(XstiltsInputError, match=f"{path}: .*{message}"):
        read_chain(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(XstiltsInputError, match="does not exist"):
        read_chain(tmp_path / "nope.yaml")


def test_main_runs_the_chain_as_child_runs_of_one_parent(tracking_store, tiny_model_dir, tmp_path, monkeypatch):
    # The MLproject commands run `python -m ...`: this interpreter's environment must come first on PATH.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    fast = f"model: {tiny_model_dir}, epochs: 1, batch_size: 16, max_length: 64, max_train_examples: 32"
    path = write_config(tmp_path, f"chain:\n  intermediate: {{task: anli, {fast}}}\n  target: {{task: xnli, {fast}}}\n"
                                  "  evaluate: {langs: 'en,sw'}\n")
    result = CliRunner().invoke(main.main, ["--config", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parent = next(run for run in runs if run.data.tags["xlt.phase"] == "main")
    children = {run.data.tags["xlt.phase"]: run for run in runs if run is not parent}
    assert set(children) == {"intermediate", "target", "evaluate"}
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["mlflow.parentRunId"] for run in children.values()} == {parent.info.run_id}
    assert children["target"].data.params["init_run_id"] == children["intermediate"].info.run_id
    assert children["evaluate"].data.params["train_run_id"] == children["target"].info.run_id
    assert set(children["evaluate"].data.metrics) >= {"eval/xnli/en/accuracy", "eval/xnli/sw/accuracy"}

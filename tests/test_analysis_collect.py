"""Runs logged with mlflow into a temporary store -> the tidy table: filters, statuses and values left out."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from analysis.collect import RunSelection, collect, parse_tags
from components.data import SELECTED_ON_SCORED_SPLIT, optimistic_score_reason
from components.errors import XstiltsInputError
from components.retrieval import BUCC_IN_SAMPLE
from components.tasks import TASKS
from pipelines import evaluate, target
from tests.test_entry_points import FAST, invoke, run_id_of
from tests.test_retrieval_eval import bucc_root, run_bucc  # noqa: F401  (bucc_root: a fixture)

CONTRACT = {"task": "xnli", "model": "m", "method": "full", "seed": "1", "intermediate_task": "anli",
            "intermediate_source_lang": "en", "data_protocol": "dev-split"}


def log_run(metrics, params=None, phase="evaluate", status="FINISHED", tags=None, parent_run_id=None,
            experiment="study"):
    """One run as the evaluate phase leaves it (or in another phase or status); returns its id."""
    run_tags = {"xlt.phase": phase, **(tags or {})}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(experiment_id=experiment_id(experiment), tags=run_tags) as run:
        mlflow.log_params(CONTRACT if params is None else params)
        mlflow.log_metrics(metrics)
    if status != "FINISHED":
        MlflowClient().set_terminated(run.info.run_id, status)
    return run.info.run_id


def experiment_id(name):
    """The id of experiment `name`, created if needed (without `set_experiment`, which would leak into other tests)."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    return existing.experiment_id if existing else client.create_experiment(name)


def test_finished_evaluate_runs_become_tidy_rows_and_the_rest_is_counted(tracking_store):
    good = log_run({"eval/xnli/de/accuracy": 61.5, "eval/xnli/en/accuracy": 80.0, "peak_rss_mb": 900.0})
    log_run({"eval/xnli/de/accuracy": 10.0}, status="FAILED")
    log_run({"eval/xnli/de/accuracy": 11.0}, status="RUNNING")
    log_run({"eval/xnli/de/accuracy": 12.0}, phase="target")
    collected = collect(RunSelection(experiment="study"))
    assert collected.status_counts == {"FINISHED": 1, "FAILED": 1, "RUNNING": 1}
    assert collected.ignored_runs == {"FAILED": 1, "RUNNING": 1}
    rows = collected.tidy.set_index("lang")
    assert rows.loc["de", "value"] == 61.5 and rows.loc["en", "value"] == 80.0
    assert set(rows["run_id"]) == {good} and set(rows["target_task"]) == {"xnli"}
    assert rows.loc["de", ["intermediate_task", "intermediate_source_lang", "method", "seed", "metric"]].tolist() == \
        ["anli", "en", "full", "1", "accuracy"]


def test_values_that_cannot_be_trusted_are_left_out_with_the_reason(tracking_store):
    log_run({"eval/xnli/de/accuracy": 61.0, "eval/xnli/de/acc": 61.0, "eval/xnli/xx/accuracy": 50.0,
             "eval/pawsx/de/accuracy": 70.0, "eval/xnli/fr/accuracy": 0.61})
    log_run({"eval/xnli/fr/accuracy": 62.0, "eval/xnli/de/accuracy": 140.0})
    log_run({"eval/xnli/de/accuracy": 60.0}, params={key: CONTRACT[key] for key in ("task", "model", "method")})
    collected = collect(RunSelection(experiment="study"))
    reasons = dict(zip(collected.problems["item"], collected.problems["reason"]))
    assert reasons["eval/xnli/de/acc"] == "metric not among the task's registry metrics"
    assert reasons["eval/xnli/xx/accuracy"] == "language not in the task's registry languages"
    assert reasons["eval/pawsx/de/accuracy"] == "metric key's task differs from the run's `task` param"
    assert reasons["eval/xnli/de/accuracy"] == "value off the 0-100 scale"
    assert reasons["eval/xnli/fr/accuracy"] == "superseded by a later run of the same configuration, seed and language"
    assert reasons["params"] == "missing param(s) seed, intermediate_task"
    assert collected.tidy[["lang", "value"]].values.tolist() == [["de", 61.0], ["fr", 62.0]]


def test_parent_run_and_tag_filters(tracking_store):
    with mlflow.start_run(experiment_id=experiment_id("study"), tags={"xlt.phase": "main"}) as parent:
        pass
    child = log_run({"eval/xnli/de/accuracy": 61.0}, parent_run_id=parent.info.run_id, tags={"study": "a"})
    other = log_run({"eval/xnli/de/accuracy": 62.0}, params={**CONTRACT, "seed": "2"}, tags={"study": "b"})
    assert set(collect(RunSelection(parent_run_id=parent.info.run_id)).tidy["run_id"]) == {child}
    assert set(collect(RunSelection(tags=parse_tags("study=b"))).tidy["run_id"]) == {other}
    assert set(collect(RunSelection()).tidy["run_id"]) == {child, other}
    assert "tags.`mlflow.parentRunId` = 'abc'" in RunSelection(parent_run_id="abc").filter_string()


def test_bad_selections_fail_clearly(tracking_store):
    log_run({"eval/xnli/de/accuracy": 61.0}, status="RUNNING")
    for selection, message in [
        (RunSelection(experiment="nope"), "experiment 'nope' does not exist"),
        (RunSelection(parent_run_id="0123456789abcdef0123456789abcdef"), "parent run '0123456789abcdef"),
        (RunSelection(tags=(("study", "z"),)), "no `evaluate` runs match all experiments, tag study=z"),
        (RunSelection(experiment="study"), r"none is FINISHED \(1 RUNNING\)"),
    ]:
        with pytest.raises(XstiltsInputError, match=message):
            collect(selection)


def test_tag_filters_refuse_what_would_break_the_filter_string():
    assert parse_tags(" study = a , xlt.task=xnli,") == (("study", "a"), ("xlt.task", "xnli"))
    for bad in ("study", "stu`dy=a", "study=it's"):
        with pytest.raises(XstiltsInputError, match="expected key=value"):
            parse_tags(bad)


def test_each_value_carries_the_split_its_run_logged_for_the_language(tracking_store):
    log_run({"eval/udpos/wo/f1": 50.0, "eval/udpos/ja/f1": 40.0},
            params={**CONTRACT, "task": "udpos", "eval_split/udpos/wo": "test", "eval_split/udpos/ja": "dev"})
    log_run({"eval/xnli/de/accuracy": 61.0})  # logged before evaluate recorded the split
    tidy = collect(RunSelection(experiment="study")).tidy.set_index(["target_task", "lang"])
    assert tidy.loc[("udpos", "wo"), "eval_split"] == "test" and tidy.loc[("udpos", "ja"), "eval_split"] == "dev"
    assert tidy.loc[("xnli", "de"), "eval_split"] == "unrecorded"


def test_each_value_carries_the_reason_its_run_gave_for_being_optimistic(tracking_store):
    log_run({"eval/bucc2018/zh/f1": 30.0, "eval/bucc2018/de/f1": 20.0},
            params={**CONTRACT, "task": "bucc2018", "seed": "none", "optimistic/bucc2018/zh": "in-sample threshold"})
    log_run({"eval/xnli/de/accuracy": 61.0})  # no optimistic/ param: not optimistic
    tidy = collect(RunSelection(experiment="study")).tidy.set_index(["target_task", "lang"])
    assert tidy.loc[("bucc2018", "zh"), "optimistic"] == "in-sample threshold"
    assert tidy.loc[("bucc2018", "de"), "optimistic"] == "" and tidy.loc[("xnli", "de"), "optimistic"] == ""


@pytest.mark.parametrize("task, protocol, lang, select_holdout, reason", [
    ("panx", "auto", "en", 0, SELECTED_ON_SCORED_SPLIT),  # target-dev: English dev selects and is scored
    ("panx", "target-dev", "de", 0, ""),  # another language's dev split is not the selection set
    ("panx", "target-dev", "en", 100, ""),  # selection on held-out training items
    ("xnli", "auto", "en", 0, ""),  # dev-split: the scored English items neither train nor select
    ("xnli", "standard", "en", 0, SELECTED_ON_SCORED_SPLIT),  # XTREME blanks XNLI test labels: English scored on dev
    ("xquad", "standard", "en", 0, ""),  # scored on test
])
def test_an_english_score_on_the_selection_set_is_optimistic(task, protocol, lang, select_holdout, reason):
    assert optimistic_score_reason(TASKS[task], protocol, lang, select_holdout) == reason


def test_evaluate_marks_an_in_sample_bucc_score_and_collect_labels_it(tracking_store, tiny_model_dir, bucc_root):
    run = run_bucc(tiny_model_dir)
    assert run.data.params["optimistic/bucc2018/zh"] == BUCC_IN_SAMPLE
    tidy = collect(RunSelection()).tidy
    assert set(tidy["optimistic"]) == {BUCC_IN_SAMPLE} and set(tidy["metric"]) == {"f1", "precision", "recall"}


def test_evaluate_marks_the_english_score_on_the_selection_set(tracking_store, tiny_model_dir):
    """UD-POS (standard): the bundle has English dev only, which also selects; Wolof is scored on test."""
    code, out = invoke(target.main, ["--task", "udpos", "--model", str(tiny_model_dir), *FAST,
                                     "--max-select-examples", "20"])
    assert code == 0, out
    code, out = invoke(evaluate.main, ["--train-run-id", run_id_of(out, "target"), "--langs", "en,wo",
                                       "--max-eval-examples", "10"])
    assert code == 0, out
    params = MlflowClient().get_run(run_id_of(out, "evaluate")).data.params
    assert params["optimistic/udpos/en"] == SELECTED_ON_SCORED_SPLIT and "optimistic/udpos/wo" not in params
    tidy = collect(RunSelection()).tidy.set_index(["lang", "metric"])
    assert tidy.loc[("en", "f1"), "optimistic"] == SELECTED_ON_SCORED_SPLIT
    assert tidy.loc[("wo", "f1"), "optimistic"] == ""

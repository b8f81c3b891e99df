"""How training curves and the selected checkpoint's values reach MLflow."""

import mlflow
from mlflow.tracking import MlflowClient
from transformers import TrainerState

from components import tracking

SELECT_KEY = "select/xnli/en/accuracy"


def test_a_run_shows_the_selected_evaluation_not_the_last(tracking_store):
    """Two epochs where the first is selected: MLflow shows a key's value at its highest step, which must be the
    selected epoch's accuracy, while the key's history keeps both epochs' evaluations."""
    callback = tracking.MetricsCallback("xnli", "en")
    state = TrainerState()
    evaluations = [(3, {"eval_accuracy": 61.0, "eval_loss": 0.9}), (6, {"eval_accuracy": 48.0, "eval_loss": 1.1})]
    with mlflow.start_run() as run:
        # What the Trainer does at each epoch's end: log the evaluation, then record the best checkpoint so far.
        for step, logs in evaluations:
            state.global_step = step
            state.log_history.append({**logs, "epoch": step / 3, "step": step})
            callback.on_log(None, state, None, logs=logs)
            if state.best_metric is None or logs["eval_accuracy"] > state.best_metric:
                state.best_metric, state.best_global_step = logs["eval_accuracy"], step
        callback.on_train_end(None, state, None)

    client = MlflowClient()
    history = client.get_metric_history(run.info.run_id, SELECT_KEY)
    curve = [point for point in history if point.step in {step for step, _ in evaluations}]
    assert [point.value for point in curve] == [61.0, 48.0]
    best = max(point.value for point in curve)
    shown = client.get_run(run.info.run_id).data.metrics
    assert shown[SELECT_KEY] == best == 61.0
    assert shown["select/xnli/en/loss"] == 0.9  # the selected epoch's loss too, not the last epoch's 1.1


def test_a_run_without_checkpoints_logs_its_one_evaluation_once(tracking_store):
    """One evaluation in all: the Trainer keeps no checkpoint (no best step), and the run ends on that model, whose
    value is already the one shown (the highest step): it is not logged a second time."""
    callback = tracking.MetricsCallback("xnli", "en")
    state = TrainerState(global_step=5)
    state.log_history.append({"eval_accuracy": 55.0, "epoch": 1.0, "step": 5})
    with mlflow.start_run() as run:
        callback.on_log(None, state, None, logs={"eval_accuracy": 55.0})
        callback.on_train_end(None, state, None)
    history = MlflowClient().get_metric_history(run.info.run_id, SELECT_KEY)
    assert [(point.step, point.value) for point in history] == [(5, 55.0)]

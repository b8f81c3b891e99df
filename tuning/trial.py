"""One trial: `target` with the trial's sampled options, as a child run of the study run, pruned on English dev.

The objective is the metric the Trainer selects checkpoints on, which `components.training` computes on the
training language's dev data only (English for every target task): a study never reads a target-language dev set.
"""

from typing import Callable

import optuna
from transformers import TrainerCallback

from components import tracking
from tuning.space import SearchSpace

TRIAL_RUN_ATTR = "xlt.mlflow_run_id"  # the trial's MLflow run, on the Optuna trial once its training starts


class PruningCallback(TrainerCallback):
    """Reports the Trainer's selection metric to the trial after every evaluation and prunes when its pruner says
    so; keeps the Trainer's best value of that metric, the value of the selected checkpoint, as the objective.

    A pruned trial's run ends KILLED here, inside its `phase_run`, so that the exception does not end it FAILED.
    """

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.evaluations = 0
        self.objective: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.trial.set_user_attr(TRIAL_RUN_ATTR, tracking.active_run_id())

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations += 1
        name = args.metric_for_best_model
        self.trial.report(metrics[name if name.startswith("eval_") else f"eval_{name}"], step=self.evaluations)
        # After the last evaluation the trial is finished, so its value counts in full.
        if state.global_step < state.max_steps and self.trial.should_prune():
            tracking.end_active_run("KILLED")
            raise optuna.TrialPruned(f"pruned at evaluation {self.evaluations}, step {state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        self.objective = state.best_metric  # staged training: the last stage's, which selects on the task's dev


def run_trial(trial: optuna.Trial, train: Callable[..., str], space: SearchSpace, options: dict, study_name: str,
              study_run_id: str, worker: str) -> float:
    """Trains with `options`, the trial's sampled values replacing theirs, and returns the objective.

    Args:
        train: `pipelines.target.train_target`, so a trial runs exactly what `target` runs.
        options: `target`'s option values, the fixed part of every trial.
    """
    sampled = space.suggest(trial)
    pruning = PruningCallback(trial)
    tags = {"tune_study": study_name, "tune_trial": trial.number, "tune_worker": worker, "tune_role": "trial",
            "tuned": ",".join(space.names)}
    run_id = train(**{**options, **sampled}, parent_run_id=study_run_id, run_tags=tags, trainer_callbacks=[pruning])
    tracking.log_to_run(run_id, metrics={"objective": pruning.objective})
    return pruning.objective

"""What a worker leaves when it stops: the cell's YAML of tuned values, the study run's results, the trials table.

Every worker that stops does this, so the files and the study run reflect the last trials whoever ran them. The best
params are logged on the study run as params (`best/<name>`) once no trial is left to run (params cannot change
afterwards); the best value so far is a metric, stepped by the number of finished trials.
"""

from pathlib import Path

import optuna
import yaml

from components import tracking
from tuning.best_params import best_params_path, write_best_params
from tuning.study import StudyPlan, StudyState
from tuning.trial import TRIAL_RUN_ATTR


def finish(study: optuna.Study, plan: StudyPlan, study_run_id: str, own_run_id: str, defaults: dict,
           directory: Path, storage_shown: str) -> tuple[StudyState, Path | None]:
    """Writes the cell's YAML (if a trial completed) and logs the results on the study run; returns the study's state
    and the YAML path. Ends the study run FINISHED when its own worker could not (it died) and no trial is left."""
    state = StudyState.of(study)
    finished = state.counts["complete"] + state.counts["pruned"]
    counts = {f"trials_{name}": count for name, count in state.counts.items() if count}
    if state.best is None:
        tracking.log_to_run(study_run_id, metrics=counts, step=finished)
        return state, None
    content = {
        "cell": plan.cell, "study": plan.name, "storage": storage_shown, "objective": plan.objective,
        "best_value": state.best.value, "best_trial": state.best.number,
        "params": state.best.params, "defaults": {name: defaults[name] for name in state.best.params},
        "trials": state.counts, "complete": not state.open,
        "study_run_id": study_run_id, "best_run_id": state.best.user_attrs.get(TRIAL_RUN_ATTR, ""),
    }
    path = best_params_path(directory, plan.cell)
    write_best_params(path, content)
    best = {f"best/{name}": value for name, value in state.best.params.items()} if not state.open else {}
    tracking.log_to_run(study_run_id, params=best, step=finished,
                        metrics={"best_value": state.best.value, "best_trial": state.best.number, **counts},
                        tags={"tune_best_params_file": path}, texts={"best_params.yaml": yaml.safe_dump(content)})
    if not state.open and study_run_id != own_run_id and tracking.run_status(study_run_id) == "RUNNING":
        tracking.terminate_run(study_run_id, "FINISHED")
    return state, path


def trials_table(study: optuna.Study) -> list[str]:
    """One line per trial: number, state, objective, sampled values, MLflow run."""
    lines = [f"{'trial':>5}  {'state':<8}  {'objective':>9}  params  run"]
    for trial in study.get_trials(deepcopy=False):
        value = f"{trial.value:9.2f}" if trial.value is not None else f"{'-':>9}"
        params = ", ".join(f"{name}={sampled:.3g}" if isinstance(sampled, float) else f"{name}={sampled}"
                           for name, sampled in trial.params.items())
        lines.append(f"{trial.number:>5}  {trial.state.name:<8}  {value}  {params}  "
                     f"{trial.user_attrs.get(TRIAL_RUN_ATTR, '')}")
    return lines

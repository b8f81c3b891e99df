"""`tune`: an Optuna study per (target task, method, model, intermediate init); every trial is a `target` run.

Takes every option of `target` (the fixed part of each trial) plus the study's: a search space over `target` options,
a trial budget and a time budget, a storage that workers on one or many machines share, a seeded TPE sampler and a
pruner on the English-dev evaluations. The objective is the English-dev selection metric; no target-language dev
set is read (`tuning.trial`).

Reads: what `target` reads. Writes: a study run (params: the cell, `space/<name>`, `default/<name>`, the budget;
metrics: `best_value`, `best_trial`, `trials_<state>`; params `best/<name>` once no trial is left; artifact
`best_params.yaml`), one child `target` run per trial (tags `xlt.tune_study`, `xlt.tune_trial`; metric `objective`;
pruned trials KILLED, failed ones FAILED), and the cell's YAML of tuned values for the grid (`tuning.best_params`).
A worker that joins an existing study (same name and storage) logs a worker run of its own and runs its trials under
the study run.
"""

from pipelines.options import command

main = command("tune", __doc__, "pipelines.tune:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

from components import tracking
from components.errors import XstiltsInputError
from components.methods import get_method
from components.models import resolve_model
from components.settings import PROJECT_ROOT, threads_per_process
from components.tasks import get_task
from components.model_registry import check_max_length
from components.training import check_trained_task
from pipelines.cli import ZERO_SHOT_SOURCE_LANG
from pipelines.target import main as target_command, train_target
from tuning.best_params import cell_key, intermediate_label, model_label
from tuning.results import finish, trials_table
from tuning.space import read_space
from tuning.storage import open_storage, worker_id
from tuning.study import DeadWorkerTrials, StudyPlan, Worker, create_or_join, queue_budget, study_run_of
from tuning.trial import run_trial

# `target` options that define a study's cell (task, init, model, method), its data or its replicate: never sampled.
FIXED_PER_STUDY = ("task", "init_run_id", "model", "method", "protocol", "seed", "max_train_examples",
                   "max_select_examples", "train_source_override", "select_holdout")
DEFAULT_SPACES = {False: PROJECT_ROOT / "configs" / "tune" / "full.yaml",
                  True: PROJECT_ROOT / "configs" / "tune" / "adapters.yaml"}


def run(space: str, n_trials: int, time_budget_s: int, study_name: str, storage: str, workers: int,
        sampler_seed: int, pruner: str, heartbeat_s: int, best_params_dir: str, **options) -> None:
    for name, value, least in (("n_trials", n_trials, 1), ("workers", workers, 1),
                               ("heartbeat_s", heartbeat_s, 1), ("time_budget_s", time_budget_s, 0)):
        if value < least:
            raise XstiltsInputError(f"{name} must be at least {least}, got {value}")
    task, method = get_task(options["task"]), get_method(options["method"], "target")
    check_trained_task(task, "target")
    check_max_length(options["max_length"], options["model"], [task])  # before the study run, not in each trial
    search = read_space(space or str(DEFAULT_SPACES[method.adapters]), tunable_options(), fixed_option_names())
    cell = {"task": task.name, "method": method.name, "model": model_label(resolve_model(options["model"]).name),
            "intermediate": intermediate_of(options["init_run_id"])}
    plan = StudyPlan(study_name or cell_key(**cell), cell,
                     tracking.metric_key("select", task.name, ZERO_SHOT_SOURCE_LANG, task.headline_metric),
                     search, n_trials, pruner)
    on_dead_trial = DeadWorkerTrials(plan.name)
    opened = open_storage(storage, workers, heartbeat_s, on_dead_trial)
    study, created = create_or_join(opened, plan)
    study_run_id = "" if created else study_run_of(study)
    me = worker_id()
    threads = threads_per_process(workers, dict(os.environ), os.cpu_count() or 1)
    os.environ.update(threads)  # the helper workers inherit it
    if threads:
        torch.set_num_threads(int(threads["OMP_NUM_THREADS"]))  # this process's own pool, already started
    defaults = {name: options[name] for name in search.names}
    params = {**cell, "init_run_id": options["init_run_id"], "study": plan.name, "study_storage": opened.shown,
              "n_trials": n_trials, "time_budget_s": time_budget_s, "workers": workers, "sampler_seed": sampler_seed,
              "pruner": pruner, "objective": plan.objective, "cpu_threads": os.environ.get("OMP_NUM_THREADS", "default"),
              **{f"space/{dimension.name}": dimension.describe() for dimension in search.dimensions},
              **{f"default/{name}": value for name, value in defaults.items()}}
    tags = {"tune_study": plan.name, "tune_worker": me,
            **({"tune_role": "study"} if created else {"tune_role": "worker", "study_run_id": study_run_id})}
    deadline = time.monotonic() + time_budget_s if time_budget_s else math.inf
    with tracking.phase_run("tune", params, tags=tags) as own_run_id:
        if created:
            study_run_id = own_run_id
            queue_budget(study, n_trials, study_run_id)
        click.echo(f"tune run {own_run_id}: study {plan.name!r} in {opened.shown} "
                   f"({'created' if created else 'joined'}; study run {study_run_id})")
        helpers = [subprocess.Popen(worker_command(plan.name), env=worker_environment()) for _ in range(workers - 1)]
        try:
            ran = Worker(study, opened, on_dead_trial,
                         lambda trial: run_trial(trial, train_target, search, options, plan.name, study_run_id, me),
                         me, sampler_seed, n_trials, deadline).run()
        finally:
            failed_helpers = [helper.pid for helper in helpers if helper.wait() != 0]
        tracking.log_to_run(own_run_id, metrics={"trials_run_by_worker": len(ran)})
        state, path = finish(study, plan, study_run_id, own_run_id, defaults, Path(best_params_dir), opened.shown)
    click.echo("\n".join(trials_table(study)))
    for pid in failed_helpers:
        click.echo(f"worker process {pid} failed; its running trial, if any, was failed and retried", err=True)
    left = "no trial left" if not state.open else f"{state.counts['waiting']} trial(s) still queued"
    click.echo(f"study {plan.name!r}: {left}; best params " + (f"in {path}" if path else "none (no trial completed)"))


def tunable_options() -> dict[str, click.ParamType]:
    """`target`'s options that a search space may sample, with their types."""
    return {param.name: param.type for param in target_command.params if param.name not in FIXED_PER_STUDY}


def fixed_option_names() -> tuple[str, ...]:
    """The fixed options by name, as a space would name them."""
    return tuple(param.name for param in target_command.params if param.name in FIXED_PER_STUDY)


def intermediate_of(init_run_id: str) -> str:
    if not init_run_id:
        return intermediate_label()
    params = tracking.finished_run(init_run_id, "intermediate").data.params
    return intermediate_label(params.get("task", ""), params.get("source_lang", ""))


def worker_command(study_name: str) -> list[str]:
    """This command line for one more worker of the study: the same options, one worker."""
    context = click.get_current_context()
    values = {**context.params, "workers": 1, "study_name": study_name}
    arguments = []
    for param in context.command.params:
        if values.get(param.name) is not None:
            arguments += [param.opts[0], str(values[param.name])]
    return [sys.executable, "-m", "pipelines.tune", *arguments]


def worker_environment() -> dict[str, str]:
    """This environment, with the project importable from any working directory (relative paths keep their
    meaning because the working directory stays)."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path}

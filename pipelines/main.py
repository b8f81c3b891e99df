"""`main`: runs a study grid (intermediate arms x targets x methods x seeds), every step a child of one parent run.

Reads: `--config` (YAML, see configs/ and docs/grids.md). Each step is an MLproject entry point launched with the
local env manager, as soon as its own upstream steps have run (`components.executors`): on this machine
(`--executor local`, `--workers` at a time) or as Ray tasks (`--executor ray`); a step whose process or node died is
retried `--max-retries` times. A step whose entry point, parameters (upstream run ids included) and code match a
FINISHED run of the experiment is not run again (get-or-run, found by a tracking-server query on the `xlt.cache_key`
tag). The study run carries a heartbeat (`xlt.heartbeat`): a second driver of the same config refuses while the first
lives, and takes over (marks FAILED, redoes what was RUNNING) a study whose driver is gone. Writes: `grid.json` (every
step: status, run id, seconds, node and devices) and the counts `grid/{done,cached,failed,blocked,remaining}` as
metrics of the parent run.
"""

from pipelines.options import command

main = command("main", __doc__, "pipelines.main:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

import hashlib
import json
import os
from pathlib import Path

import click
import mlflow
from mlflow.projects.utils import get_entry_point_command, get_run_env_vars, load_project

from components import executors, tracking
from components.errors import XstiltsInputError
from components.grid import code_version, expand, read_config
from components.options import logged_defaults, parameter_names
from components.plan import study_plan
from components.settings import PROJECT_ROOT, threads_per_process

STEP_ENTRIES = ("lang_adapter", "intermediate", "target", "evaluate")
SERVERLESS_STORES = ("sqlite:", "file:", "/")


def launch(entry: str, parameters: dict[str, str], key: str, parent_run_id: str, experiment_id: str,
           tags: dict[str, str] | None = None, *, devices: str | None = None) -> str:
    """Runs one entry point to its end in a step run created here; returns its run id, or raises naming the failed
    run (`executors.StepDied` where its process was killed). The entry point's command is MLflow's (the MLproject,
    local env manager) in a process started here, so that `devices` (its CUDA_VISIBLE_DEVICES; None = this process's)
    reaches it without touching this process's environment, which concurrent launches share. MLflow logs a project's
    parameters only in runs it creates itself, so the step run gets them here, defaults filled in as `mlflow run`
    would; `tags` are the grid's provenance for the step (where its tuned values came from), and the run also
    records the node and devices it ran on."""
    run_id = create_step_run(entry, parameters, key, parent_run_id, experiment_id, tags, devices)
    try:
        [step_command] = get_entry_point_command(load_project(str(PROJECT_ROOT)), entry, parameters, None)
    except Exception as error:  # refused before the entry point started: the run created above must not stay RUNNING
        tracking.terminate_run(run_id, "FAILED")
        raise RuntimeError(f"run {run_id} FAILED: {error}") from None
    environment = {**os.environ, **get_run_env_vars(run_id, experiment_id),
                   **({"CUDA_VISIBLE_DEVICES": devices} if devices is not None else {})}
    returncode = executors.run_step_process(step_command, environment)
    if tracking.run_status(run_id) == "RUNNING":  # an entry point ends its own run, unless it died first
        tracking.terminate_run(run_id, "FINISHED" if returncode == 0 else "FAILED")
    if returncode == 0:
        return run_id
    if executors.killed(returncode):
        raise executors.StepDied(f"run {run_id} FAILED: its process was killed (exit status {returncode})")
    raise RuntimeError(f"run {run_id} FAILED; its own error is printed above")


def create_step_run(entry: str, parameters: dict[str, str], key: str, parent_run_id: str, experiment_id: str,
                    tags: dict[str, str] | None, devices: str | None) -> str:
    """The RUNNING run a step's entry point attaches to: its parameters with the defaults `mlflow run` would fill in,
    the grid's tags, and the node and devices it runs on."""
    placement = executors.placement_here(devices)
    return tracking.create_step_run(experiment_id, entry, key, parent_run_id, {**logged_defaults(entry), **parameters},
                                    {**(tags or {}), f"{tracking.TAG_PREFIX}{executors.NODE_TAG}": placement.node,
                                     f"{tracking.TAG_PREFIX}{executors.DEVICES_TAG}": placement.devices})


def check_workers(workers: int, executor: str) -> None:
    if workers < 1:
        raise XstiltsInputError(f"workers must be at least 1, got {workers}")
    uri = tracking.default_tracking_uri()
    if (workers > 1 or executor == "ray") and uri.startswith(SERVERLESS_STORES):
        needs = "executor ray" if executor == "ray" else f"workers {workers}"
        raise XstiltsInputError(
            f"{needs} needs a tracking server that serialises the writers, not the store {uri}: start one "
            "with scripts/tracking_server.sh and set MLFLOW_TRACKING_URI to its http:// address")


def current_launch():
    """`launch` as this module has it when a step starts (a test's stand-in takes its place)."""
    return launch


def start_executor(executor: str, workers: int, ray_address: str):
    if executor == "ray":
        return executors.RayExecutor(ray_address, current_launch, tracking.default_tracking_uri())
    return executors.LocalExecutor(workers, current_launch, executors.local_gpu_ids())


def take_over_dead_drivers(study: dict[str, str]) -> None:
    """Marks FAILED the RUNNING study runs of this config whose driver is gone; refuses if one's driver lives."""
    for dead_run_id, why in executors.dead_study_runs(tracking.running_run_ids({"phase": "main", **study}),
                                                      lambda run_id: tracking.get_run(run_id).data.tags):
        tracking.terminate_run(dead_run_id, "FAILED")
        click.echo(f"study run {dead_run_id} of this config was left RUNNING by a driver that is gone ({why}): "
                   "marked FAILED, its steps are taken over")


def yield_to_older_driver(study: dict[str, str], own_run_id: str) -> None:
    """Two drivers that started at once both passed `take_over_dead_drivers`: the younger study run gives way."""
    own = tracking.get_run(own_run_id).info
    rivals = [tracking.get_run(run_id) for run_id in tracking.running_run_ids({"phase": "main", **study})
              if run_id != own_run_id]
    older = [run for run in rivals if (run.info.start_time, run.info.run_id) < (own.start_time, own.run_id)]
    executors.dead_study_runs([run.info.run_id for run in older], lambda run_id: tracking.get_run(run_id).data.tags)


def run(config: str, workers: int, force: str, executor: str, ray_address: str, max_retries: int,
        plan: bool) -> None:
    path = Path(config)
    config = read_config(path, {entry: parameter_names(entry) for entry in STEP_ENTRIES})
    grid = expand(config)
    forced = {entry.strip() for entry in force.split(",") if entry.strip()}
    unknown = sorted(forced - {*STEP_ENTRIES, "all"})
    if unknown:
        raise XstiltsInputError(f"force {', '.join(unknown)}: expected entry points ({', '.join(STEP_ENTRIES)}) or all")
    check_workers(workers, executor)
    os.environ.update(threads_per_process(workers, dict(os.environ), os.cpu_count() or 1))
    for reason in grid.skipped:
        click.echo(f"skipped cell {reason}")
    version = code_version(PROJECT_ROOT)
    if plan:  # reads the store and stops: no run is created or marked, nothing trains
        click.echo(study_plan(grid, config, version, forced))
        return
    study = {"study_key": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]}
    take_over_dead_drivers(study)
    step_executor = start_executor(executor, workers, ray_address)
    try:
        resources = executors.read_resources(config, STEP_ENTRIES, step_executor.has_gpus())
        step_executor.check(grid, resources)
        click.echo(step_executor.describe())
        with tracking.phase_run("main", {"config": path.name, "code_version": version, "workers": workers,
                                         "executor": executor, "ray_address": ray_address, "max_retries": max_retries,
                                         "step_cpu_threads": os.environ.get("OMP_NUM_THREADS", "default"),
                                         "force": force, "n_steps": len(grid.steps)},
                                tags={**study, **executors.driver_tags()}) as parent_run_id, \
                executors.Heartbeat(parent_run_id):
            yield_to_older_driver(study, parent_run_id)
            tracking.log_text(path.read_text(encoding="utf-8"), "config.yaml")
            experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
            grid_run = executors.GridRun(grid, version, forced, parent_run_id, experiment_id, step_executor,
                                         max_retries)
            grid_run.run()
            tracking.log_text(json.dumps(grid_run.records, indent=1), "grid.json")
            tracking.link_reused_runs(parent_run_id, [record["run_id"] for record in grid_run.records
                                                      if record["status"] == "cached"])
            counts = grid_run.counts()
            click.echo(", ".join(f"{name} {value}" for name, value in counts.items()))
            if counts["failed"] or counts["blocked"]:
                raise XstiltsInputError(f"{counts['failed']} step(s) failed and {counts['blocked']} were blocked by "
                                        "them (see the lines above); rerun the same command to resume: finished steps "
                                        "are reused")
    finally:
        step_executor.close()

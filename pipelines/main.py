"""`main`: runs a study grid (intermediate arms x targets x methods x seeds), every step a child of one parent run.

Reads: `--config` (YAML, see configs/ and README: Study grids). Each step is an MLproject entry point launched with the
local env manager; a step whose entry point, parameters (upstream run ids included) and code match a FINISHED run of
the experiment is not run again (get-or-run, found by a tracking-server query on the `xlt.cache_key` tag). Steps left
RUNNING by a killed study are marked FAILED and redone, and so is the killed study's own run (same config). Writes: `grid.json` (every step: status, run id, seconds) and
the counts `grid/{done,cached,failed,blocked,remaining}` as metrics of the parent run.
"""

from pipelines.options import command

main = command("main", __doc__, "pipelines.main:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import click
import mlflow
from mlflow.exceptions import ExecutionException

from components import tracking
from components.errors import XstiltsInputError
from components.grid import Grid, Step, StepRef, cache_key, code_version, expand, read_config
from components.options import logged_defaults, parameter_names
from components.settings import PROJECT_ROOT

STEP_ENTRIES = ("lang_adapter", "intermediate", "target", "evaluate")
STATUSES = ("done", "cached", "failed", "blocked")
SERVERLESS_STORES = ("sqlite:", "file:", "/")


def launch(entry: str, parameters: dict[str, str], key: str, parent_run_id: str, experiment_id: str,
           tags: dict[str, str] | None = None) -> str:
    """Runs one entry point to its end in a step run created here; returns its run id, or raises naming the failed
    run. Synchronous with a given run: MLflow starts the entry point's own process only (the asynchronous mode starts
    an `mlflow run` process around it, seconds per step). MLflow logs a project's parameters only in runs it creates
    itself, so the step run gets them here, defaults filled in as `mlflow run` would; `tags` are the grid's
    provenance for the step (where its tuned values came from)."""
    run_id = tracking.create_step_run(experiment_id, entry, key, parent_run_id,
                                      {**logged_defaults(entry), **parameters}, tags)
    try:
        mlflow.projects.run(uri=str(PROJECT_ROOT), entry_point=entry, env_manager="local", parameters=parameters,
                            experiment_id=experiment_id, run_id=run_id, synchronous=True)
    except ExecutionException:
        raise RuntimeError(f"run {run_id} FAILED; its own error is printed above") from None
    except Exception as error:  # refused before the entry point started: the run created above must not stay RUNNING
        tracking.terminate_run(run_id, "FAILED")
        raise RuntimeError(f"run {run_id} FAILED: {error}") from None
    return run_id


class GridRun:
    """One pass over a grid: resolves each step's upstream run ids, reuses or launches it, and counts."""

    def __init__(self, grid: Grid, version: str, force: set[str], parent_run_id: str, experiment_id: str):
        self.grid, self.version, self.force = grid, version, force
        self.parent_run_id, self.experiment_id = parent_run_id, experiment_id
        self.run_ids: dict[str, str] = {}
        self.records: list[dict] = []

    def resolved(self, step: Step) -> dict[str, str]:
        return {name: ",".join(self.run_ids[key] for key in value.keys) if isinstance(value, StepRef) else str(value)
                for name, value in step.params.items()}

    def run_step(self, step: Step) -> tuple[str, str]:
        """(status, run id) of one step whose upstream steps all succeeded."""
        params = self.resolved(step)
        key = cache_key(step.entry, params, self.version)
        if step.entry not in self.force and "all" not in self.force:
            cached = tracking.reusable_run(self.experiment_id, key)
            if cached:
                return "cached", cached
        return "done", launch(step.entry, params, key, self.parent_run_id, self.experiment_id, step.tags)

    def run(self, workers: int) -> None:
        for level in self.grid.levels():
            runnable = []
            for step in level:
                if all(key in self.run_ids for key in step.upstream()):
                    runnable.append(step)
                else:
                    self._record(step, "blocked", "", 0.0, "an upstream step failed")
            with ThreadPoolExecutor(max_workers=workers) as pool:
                started = {pool.submit(self._timed, step): step for step in runnable}
                try:
                    for future in as_completed(started):
                        self._record(started[future], *future.result())
                except KeyboardInterrupt:  # a stopped study starts no more steps; the running ones got the signal
                    pool.shutdown(cancel_futures=True)
                    raise

    def _timed(self, step: Step) -> tuple[str, str, float, str]:
        start = time.monotonic()
        try:
            status, run_id = self.run_step(step)
        except Exception as error:  # one failed step must not stop the independent ones
            return "failed", "", time.monotonic() - start, str(error)
        return status, run_id, time.monotonic() - start, ""

    def _record(self, step: Step, status: str, run_id: str, seconds: float, error: str) -> None:
        if run_id:
            self.run_ids[step.key] = run_id
        self.records.append({"step": step.label, "entry": step.entry, "status": status, "run_id": run_id,
                             "seconds": round(seconds, 1), **({"error": error} if error else {})})
        counts = self.counts()
        click.echo(f"[{len(self.records):>3}/{len(self.grid.steps)}] {status:<7} {step.label}"
                   + (f"  ({run_id})" if run_id else f"  ({error})"))
        tracking.log_metrics({f"grid/{name}": value for name, value in counts.items()}, step=len(self.records))

    def counts(self) -> dict[str, int]:
        counts = {status: sum(record["status"] == status for record in self.records) for status in STATUSES}
        return {**counts, "remaining": len(self.grid.steps) - len(self.records)}


def check_workers(workers: int) -> None:
    if workers < 1:
        raise XstiltsInputError(f"workers must be at least 1, got {workers}")
    uri = tracking.default_tracking_uri()
    if workers > 1 and uri.startswith(SERVERLESS_STORES):
        raise XstiltsInputError(
            f"workers {workers} needs a tracking server that serialises the writers, not the store {uri}: start one "
            "with scripts/tracking_server.sh and set MLFLOW_TRACKING_URI to its http:// address")


def step_cpu_threads(workers: int, environ: dict[str, str], cpu_count: int) -> dict[str, str]:
    """OMP_NUM_THREADS for the step processes: steps that run at once share the cores (each would otherwise start a
    thread per core, and together they would oversubscribe the machine). A user's own setting wins; one step at a
    time keeps torch's default."""
    if workers == 1 or "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, cpu_count // workers))}


def run(config: str, workers: int, force: str) -> None:
    path = Path(config)
    config = read_config(path, {entry: parameter_names(entry) for entry in STEP_ENTRIES})
    grid = expand(config)
    forced = {entry.strip() for entry in force.split(",") if entry.strip()}
    unknown = sorted(forced - {*STEP_ENTRIES, "all"})
    if unknown:
        raise XstiltsInputError(f"force {', '.join(unknown)}: expected entry points ({', '.join(STEP_ENTRIES)}) or all")
    check_workers(workers)
    os.environ.update(step_cpu_threads(workers, dict(os.environ), os.cpu_count() or 1))
    for reason in grid.skipped:
        click.echo(f"skipped cell {reason}")
    version = code_version(PROJECT_ROOT)
    study = {"study_key": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]}
    for killed_run_id in tracking.running_run_ids({"phase": "main", **study}):
        # One process drives a study (its --workers are threads), so a RUNNING run of the same study was killed.
        tracking.terminate_run(killed_run_id, "FAILED")
        click.echo(f"study run {killed_run_id} of this config was left RUNNING by a killed study: marked FAILED")
    with tracking.phase_run("main", {"config": path.name, "code_version": version, "workers": workers,
                                     "step_cpu_threads": os.environ.get("OMP_NUM_THREADS", "default"), "force": force,
                                     "n_steps": len(grid.steps)}, tags=study) as parent_run_id:
        tracking.log_text(path.read_text(encoding="utf-8"), "config.yaml")
        experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
        grid_run = GridRun(grid, version, forced, parent_run_id, experiment_id)
        grid_run.run(workers)
        tracking.log_text(json.dumps(grid_run.records, indent=1), "grid.json")
        counts = grid_run.counts()
        click.echo(", ".join(f"{name} {value}" for name, value in counts.items()))
        if counts["failed"] or counts["blocked"]:
            raise XstiltsInputError(f"{counts['failed']} step(s) failed and {counts['blocked']} were blocked by them "
                                    "(see the lines above); rerun the same command to resume: finished steps are "
                                    "reused")

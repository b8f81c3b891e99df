"""Scheduling: how soon a grid step starts once its upstream steps end, on both executors, and a grid with one slow
arm against its critical path and the sum of its levels.

    python -m benchmarks.scheduling --out benchmarks/results/scheduling.json [--seconds 2] [--port 5061]

The grid is a study config of 28 steps (2 seeds x arms none, anli, xnli x targets pawsx, xnli; an intermediate run
per arm, a target and an evaluation per cell) run by `main` itself, with its step launch replaced by one that creates
the step run as `launch` does and starts a real step process (a Python interpreter) that writes the time it started
and then sleeps: `--seconds` per step, three times that for the targets of the `none` arm (the slow arm). Nothing
trains, so what is measured is the scheduling: the driver, the executor, the tracking server, process start.

- dispatch latency: the time between the end of a step's last upstream run (its end time in the tracking store,
  written when its process ended) and its own process start; steps without upstream steps are left out. Split in
  two: up to the call of the step's launch function (scheduler, cache lookup, Ray's dispatch), and from there to the
  process start (the step run's creation, process start). The median time of one tracking-server request and the
  load average put them in context: on a shared machine they are what moves these numbers.
- overhead per step: the seconds the driver saw between handing a step to the executor and its result, less the
  step's sleep.
- critical path: the longest chain of step durations (sleeps) through the grid's DAG; sum of levels: the sum over
  the grid's levels (`Grid.levels`) of their longest step, the wall time of running level by level; measured: from
  the first step process's start to the last step run's end.

Both executors run against one tracking server on PostgreSQL (scripts/tracking_server.sh, started here): the local
executor with one worker per step of the widest level, the Ray executor on a local Ray instance with steps asking for
a tenth of a CPU each (the sleeps use none), so that neither limits concurrency.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from benchmarks.common import machine
from components import executors, tracking
from components.grid import expand, read_config
from components.options import parameter_names
from components.settings import PROJECT_ROOT
from pipelines import main

GRID = """seeds: [1, 2]
methods: [full]
intermediate: [none, {task: anli}, {task: xnli}]
targets: [{task: pawsx}, {task: xnli}]
resources: {intermediate: {cpus: 0.1}, target: {cpus: 0.1}, evaluate: {cpus: 0.1}}
"""
SLOW_FACTOR = 3
STARTED_TAG = "bench_process_started"  # epoch seconds the step process wrote when it started (an xlt. tag)
ENTERED_TAG = "bench_launch_entered"  # epoch seconds the launch function was called (in the driver or a Ray worker)


class SleepingLaunch:
    """`main.launch` for the benchmark: the step run as `launch` creates it, a step process that sleeps."""

    def __init__(self, seconds: float, timestamps: str):
        self.seconds, self.timestamps = seconds, timestamps

    def __call__(self, entry, parameters, key, parent_run_id, experiment_id, tags=None, **placement):
        entered = time.time()
        run_id = tracking.create_step_run(experiment_id, entry, key, parent_run_id, parameters, tags)
        stamp = Path(self.timestamps) / run_id
        script = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time())); time.sleep(float(sys.argv[2]))"
        command = f"{sys.executable} -c \"{script}\" {stamp} {self.duration(entry, parameters)}"
        returncode = executors.run_step_process(command, dict(os.environ))
        tracking.log_to_run(run_id, tags={STARTED_TAG: stamp.read_text(), ENTERED_TAG: repr(entered)})
        tracking.terminate_run(run_id, "FINISHED" if returncode == 0 else "FAILED")
        return run_id

    def duration(self, entry: str, parameters: dict[str, str]) -> float:
        """SLOW_FACTOR x for the slow arm's training: the targets without an intermediate run."""
        return self.seconds * (SLOW_FACTOR if entry == "target" and not parameters.get("init_run_id") else 1)


def step_durations(config_path: Path, seconds: float) -> tuple[float, float, int]:
    """(critical path, sum of levels, widest level) of the grid with SleepingLaunch's durations."""
    grid = expand(read_config(config_path, {entry: parameter_names(entry) for entry in main.STEP_ENTRIES}))
    steps = {step.key: step for step in grid.steps}

    def slow(step) -> bool:
        return step.entry == "target" and "init_run_id" not in step.params

    duration = {key: seconds * (SLOW_FACTOR if slow(step) else 1) for key, step in steps.items()}
    finish: dict[str, float] = {}
    for step in grid.steps:  # in dependency order
        finish[step.key] = duration[step.key] + max((finish[key] for key in step.upstream()), default=0.0)
    levels = grid.levels()
    return max(finish.values()), sum(max(duration[step.key] for step in level) for level in levels), \
        max(len(level) for level in levels)


def measure(executor: str, config_path: Path, seconds: float, workers: int, uri: str) -> dict:
    timestamps = tempfile.mkdtemp(prefix="xstilts-bench-")
    os.environ["MLFLOW_EXPERIMENT_NAME"] = f"scheduling-{executor}-{time.time():.0f}"
    main.launch = SleepingLaunch(seconds, timestamps)
    result = CliRunner().invoke(main.main, ["--config", str(config_path), "--executor", executor,
                                            "--workers", str(workers)], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"]).experiment_id
    runs = client.search_runs([experiment_id])
    [study] = [run for run in runs if run.data.tags.get("xlt.phase") == "main"]
    steps = {run.info.run_id: run for run in runs if run is not study}
    latencies, to_launch, to_process = [], [], []
    for run in steps.values():
        upstream = [steps[value] for value in run.data.params.values() if value in steps]
        if upstream:
            upstream_end = max(up.info.end_time for up in upstream) / 1000
            entered, started = (float(run.data.tags[f"xlt.{tag}"]) for tag in (ENTERED_TAG, STARTED_TAG))
            latencies.append(started - upstream_end)
            to_launch.append(entered - upstream_end)
            to_process.append(started - entered)
    server_s = []
    for _ in range(10):
        started = time.perf_counter()
        client.get_run(study.info.run_id)
        server_s.append(time.perf_counter() - started)
    records = json.loads(Path(client.download_artifacts(study.info.run_id, "grid.json", timestamps)).read_text())
    durations = {run_id: SleepingLaunch(seconds, "").duration(run.data.tags["mlflow.project.entryPoint"],
                                                              run.data.params) for run_id, run in steps.items()}
    overheads = [record["seconds"] - durations[record["run_id"]] for record in records]
    first_start = min(float(run.data.tags[f"xlt.{STARTED_TAG}"]) for run in steps.values())
    shutil.rmtree(timestamps, ignore_errors=True)
    return {"steps": len(steps), "dispatch_latency_s": {"median": round(statistics.median(latencies), 3),
                                                        "max": round(max(latencies), 3), "n": len(latencies)},
            "upstream_end_to_launch_call_s": round(statistics.median(to_launch), 3),
            "launch_call_to_process_start_s": round(statistics.median(to_process), 3),
            "tracking_request_s": round(statistics.median(server_s), 3), "load_average": os.getloadavg()[0],
            "overhead_per_step_s": {"median": round(statistics.median(overheads), 3),
                                    "note": "driver-seen seconds per step less its sleep; records round to 0.1 s"},
            "measured_wall_s": round(max(run.info.end_time for run in steps.values()) / 1000 - first_start, 2),
            "grid_counts": next(line for line in reversed(result.output.splitlines()) if line.startswith("done "))}


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=PROJECT_ROOT / "benchmarks/results/scheduling.json")
@click.option("--seconds", type=float, default=2.0, help="Sleep of a fast step; the slow arm's steps sleep 3x.")
@click.option("--port", type=int, default=5061, help="Port of the tracking server started for the benchmark.")
def run(out: Path, seconds: float, port: int) -> None:
    server_dir = Path(tempfile.mkdtemp(prefix="xstilts-bench-server-", dir="/tmp"))
    server_dir.chmod(0o755)  # the PostgreSQL cluster inside belongs to the postgres user
    script = str(PROJECT_ROOT / "scripts" / "tracking_server.sh")
    uri = subprocess.run(["bash", script, "start", str(server_dir), str(port)], check=True, capture_output=True,
                         text=True).stdout.strip()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        config_path = server_dir / "scheduling.yaml"
        config_path.write_text(GRID, encoding="utf-8")
        critical_path, sum_of_levels, width = step_durations(config_path, seconds)
        measured = {executor: measure(executor, config_path, seconds, width, uri) for executor in ("local", "ray")}
    finally:
        subprocess.run(["bash", script, "stop", str(server_dir)], check=True)
        shutil.rmtree(server_dir, ignore_errors=True)
    result = {"machine": machine(), "grid": GRID, "fast_step_s": seconds, "slow_arm": "targets of the none arm (x3)",
              "critical_path_s": critical_path, "sum_of_levels_s": sum_of_levels, "local_workers": width,
              "executors": measured,
              "ray_overhead_per_step_minus_local_s": round(measured["ray"]["overhead_per_step_s"]["median"]
                                                           - measured["local"]["overhead_per_step_s"]["median"], 3)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    click.echo(json.dumps({key: value for key, value in result.items() if key not in ("machine", "grid")}, indent=1))


if __name__ == "__main__":
    run()

"""Where a study grid's steps run, and in which order: a DAG scheduler over two executors.

The scheduler starts a step as soon as its own upstream steps are recorded (never waiting for unrelated steps), and
blocks it when one of them failed. The driver (the `main` process) keeps the study run and the get-or-run cache; an
executor only runs `pipelines.main.launch` for the steps it is given:
- `local`: threads on this machine, `workers` at a time; on a machine with several GPUs each running step gets one
  GPU of its own (`CUDA_VISIBLE_DEVICES` in its process).
- `ray`: each step is a Ray task on whatever node Ray picks, with the GPUs and CPUs the study config's `resources:`
  ask for; Ray's GPU assignment reaches the step process through `CUDA_VISIBLE_DEVICES`.
A step whose process or node died is retried (`max_retries`); its run ends FAILED first. A driver keeps a heartbeat
tag on its study run, which tells a second driver of the same study whether the first one is alive.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

import click
import psutil

from components import tracking
from components.errors import XstiltsInputError
from components.grid import Grid, Step, StepRef, cache_key
from components.settings import CACHE_DIR_ENV, DATA_ROOT_ENV, PROJECT_ROOT, cache_dir, data_root

STATUSES = ("done", "cached", "failed", "blocked")
HEARTBEAT_TAG, DRIVER_TAG = "heartbeat", "driver"  # on the study run, under tracking.TAG_PREFIX
DEVICES_TAG, NODE_TAG = "devices", "node"  # on each step run: the GPUs its process saw, and the machine it ran on
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TIMEOUT_S = 60.0  # a study run whose heartbeat is older than this lost its driver, and is taken over
RAY_CONNECT_TIMEOUT_S = 10.0
RAY_WAITING_THREADS = 256  # steps handed to Ray at once: Ray queues them by their resources, a thread waits for each
# What the Ray workers must not be sent: the virtual environment is per node, and the stores are the server's.
RAY_EXCLUDES = [".venv", ".git", "mlruns", "mlartifacts", "mlflow.db", "outputs", "**/__pycache__"]


class StepDied(RuntimeError):
    """The step's process was killed (by a signal, the OOM killer, its node going away): worth a retry, unlike a step
    that ended with an error of its own."""


@dataclass(frozen=True)
class Resources:
    gpus: float = 0
    cpus: float = 1

    def describe(self) -> str:
        return f"{{gpus: {self.gpus:g}, cpus: {self.cpus:g}}}"


@dataclass(frozen=True)
class Placement:
    """Where a step ran: a machine (its host name, and for Ray the node id) and the GPUs its process saw."""

    node: str
    devices: str

    def describe(self) -> str:
        seen = {"all": "every device", "cpu": "cpu"}.get(self.devices, f"gpu {self.devices}")
        return f"{self.node} {seen}"


def placement_here(devices: str | None) -> Placement:
    """The placement of a step process started from this process with `devices` as its CUDA_VISIBLE_DEVICES (None:
    it inherits this process's)."""
    seen = os.environ.get("CUDA_VISIBLE_DEVICES") if devices is None else devices
    node = socket.gethostname()
    ray_node = _ray_node_id()
    return Placement(f"{node}/{ray_node[:8]}" if ray_node else node, "all" if seen is None else seen or "cpu")


def _ray_node_id() -> str:
    """The Ray node of this process where it is a Ray worker; "" elsewhere (Ray is imported for executor=ray only)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


_libc = ctypes.CDLL(None, use_errno=True) if os.uname().sysname == "Linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the step process before it executes: it is killed when the thread that started it ends, so that a
    Ray worker (or driver) that dies takes its step process along instead of leaving it to finish a run that was
    already retried elsewhere."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_step_process(command: str, environment: dict[str, str]) -> int:
    """Runs an entry point's shell command in the project folder to its end; its exit status."""
    process = subprocess.Popen(["bash", "-c", command], cwd=PROJECT_ROOT, env=environment, close_fds=True,
                               preexec_fn=_die_with_parent)
    return process.wait()


def killed(returncode: int) -> bool:
    """A process ended by a signal it did not handle: Python reports -N, a shell in between 128 + N. SIGINT and
    SIGTERM (130, 143) are stops the entry point handled itself (its run ended KILLED), not deaths."""
    return returncode < 0 or (returncode > 128 and returncode - 128 not in (signal.SIGINT, signal.SIGTERM))


def read_resources(config: dict, entries: tuple[str, ...], cluster_has_gpus: bool) -> dict[str, Resources]:
    """Each entry point's resources: the config's `resources:` (checked by `components.grid.read_config`), else one
    GPU per step where the cluster has GPUs (every step entry trains or evaluates a model), and one CPU."""
    default_gpus = 1 if cluster_has_gpus else 0
    asked = config.get("resources") or {}
    return {entry: Resources(gpus=asked.get(entry, {}).get("gpus", default_gpus),
                             cpus=asked.get(entry, {}).get("cpus", 1)) for entry in entries}


def check_satisfiable(grid: Grid, resources: dict[str, Resources], nodes: list[dict[str, float]], where: str) -> None:
    """Refuses, before anything trains, a step whose resource request no node has (Ray would wait for it forever)."""
    for step in grid.steps:
        request = resources[step.entry]
        if not any(node.get("GPU", 0) >= request.gpus and node.get("CPU", 0) >= request.cpus for node in nodes):
            offered = ", ".join(f"{{gpus: {node.get('GPU', 0):g}, cpus: {node.get('CPU', 0):g}}}" for node in nodes)
            raise XstiltsInputError(f"step {step.label}: resources.{step.entry} {request.describe()}: more than any "
                                    f"node of {where} has (its nodes: {offered})")


@dataclass
class Outcome:
    status: str
    run_id: str = ""
    error: str = ""
    placement: Placement | None = None


class LocalExecutor:
    """Step processes on this machine, `workers` at a time; with GPUs, each running step gets one of its own."""

    def __init__(self, workers: int, launch: Callable[[], Callable], gpu_ids: list[str]):
        self.workers, self.launch, self.gpu_ids = workers, launch, gpu_ids
        self.slots = workers
        self.gpu_users = {gpu: 0 for gpu in gpu_ids}  # running steps per GPU
        self.gpu_lock = threading.Lock()

    def has_gpus(self) -> bool:
        return bool(self.gpu_ids)

    def describe(self) -> str:
        gpus = f", one of GPUs {','.join(self.gpu_ids)} per step" if self.gpu_ids and self.workers > 1 else ""
        return f"executor local: {self.workers} step(s) at a time on {socket.gethostname()}{gpus}"

    def check(self, grid: Grid, resources: dict[str, Resources]) -> None:
        check_satisfiable(grid, resources, [{"GPU": len(self.gpu_ids), "CPU": os.cpu_count() or 1}],
                          f"this machine ({socket.gethostname()})")

    def run(self, step: Step, params: dict[str, str], key: str, parent_run_id: str,
            experiment_id: str) -> tuple[str, Placement]:
        """Runs the step in this thread; (its run id, where it ran)."""
        gpu = self._take_gpu()
        try:
            # The stand-in launches of tests take the six positional arguments only: `devices` only where it counts.
            devices = {"devices": gpu} if gpu is not None else {}
            run_id = self.launch()(step.entry, params, key, parent_run_id, experiment_id, step.tags, **devices)
            return run_id, placement_here(gpu)
        finally:
            self._give_back_gpu(gpu)

    def _take_gpu(self) -> str | None:
        """The least used GPU where several steps run at once on several GPUs (with as many workers as GPUs, each
        running step has one of its own); None (every GPU visible) for one step at a time."""
        if self.workers == 1 or not self.gpu_ids:
            return None
        with self.gpu_lock:
            gpu = min(self.gpu_ids, key=self.gpu_users.__getitem__)
            self.gpu_users[gpu] += 1
            return gpu

    def _give_back_gpu(self, gpu: str | None) -> None:
        if gpu is not None:
            with self.gpu_lock:
                self.gpu_users[gpu] -= 1

    def is_death(self, error: BaseException) -> bool:
        return isinstance(error, StepDied)

    def close(self) -> None:
        """Nothing to release: the step processes belong to the scheduler's threads."""


def local_gpu_ids() -> list[str]:
    """The GPUs this machine gives its processes (CUDA_VISIBLE_DEVICES where set), by the ids a child process uses."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def _launch_on_ray_node(launch: Callable, entry: str, params: dict[str, str], key: str, parent_run_id: str,
                        experiment_id: str, tags: dict[str, str]):
    """The body of a step's Ray task: the driver's launch function, with the GPUs Ray assigned (already in this
    worker's CUDA_VISIBLE_DEVICES, which the step process inherits). Ray 2.60 leaves CUDA_VISIBLE_DEVICES unset in a
    task given no GPU (ray-project/ray#54868), so such a step would see every GPU of its node, and train on the one
    Ray gave another step: it is given none."""
    import ray

    no_gpu = {} if ray.get_gpu_ids() else {"devices": ""}
    run_id = launch(entry, params, key, parent_run_id, experiment_id, tags, **no_gpu)
    return run_id, placement_here(no_gpu.get("devices"))


class RayExecutor:
    """One Ray task per step; the driver connects to (or starts) the cluster and owns the tracking of the study."""

    def __init__(self, address: str, launch: Callable[[], Callable], tracking_uri: str):
        import ray

        self.ray, self.launch, self.address = ray, launch, address
        self.where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        if address and address != "auto":
            _check_reachable(address)
        # The nodes share the tracking server only. The data bundle and model cache are each node's own
        # (XSTILTS_DATA_ROOT, XSTILTS_CACHE_DIR in its environment), except on a local instance, which is this machine
        # and must not look for them beside the copy of the code Ray runs.
        environment = {"MLFLOW_TRACKING_URI": tracking_uri}
        if not address:
            environment |= {DATA_ROOT_ENV: str(data_root()), CACHE_DIR_ENV: str(cache_dir())}
        try:
            # "local": a new instance even where RAY_ADDRESS names a cluster (Ray's default would join that one).
            context = ray.init(address=address or "local", include_dashboard=None, logging_level="ERROR",
                               log_to_driver=True,
                               runtime_env={"working_dir": str(PROJECT_ROOT), "excludes": RAY_EXCLUDES,
                                            "env_vars": environment})
        except (ConnectionError, RuntimeError, TimeoutError) as error:
            # Ray 2.60 refuses a driver that lacks the token of a cluster with token authentication, and says so only
            # in its log: the error it raises reads like an address where no cluster runs.
            token_hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else (
                "; if the cluster has token authentication, set RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) in this environment")
            raise XstiltsInputError(f"ray_address {address!r}: could not connect to a Ray cluster there "
                                    f"({type(error).__name__}: {' '.join(str(error).split())[:200]}){token_hint}"
                                    ) from None
        self.dashboard = getattr(context, "dashboard_url", "") or ""
        self.remote = ray.remote(max_retries=0)(_launch_on_ray_node)  # retried by the scheduler, which fails the run
        self.death_errors = (StepDied, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                             ray.exceptions.LocalRayletDiedError, ray.exceptions.OwnerDiedError,
                             ray.exceptions.ObjectLostError)
        self.resources: dict[str, Resources] = {}
        self.slots = RAY_WAITING_THREADS

    def nodes(self) -> list[dict[str, float]]:
        return [node["Resources"] for node in self.ray.nodes() if node["Alive"]]

    def has_gpus(self) -> bool:
        return any(node.get("GPU", 0) > 0 for node in self.nodes())

    def describe(self) -> str:
        nodes = self.nodes()
        totals = {kind: sum(node.get(kind, 0) for node in nodes) for kind in ("GPU", "CPU")}
        dashboard = f"; dashboard http://{self.dashboard}" if self.dashboard else ""
        return (f"executor ray: {self.where}, {len(nodes)} node(s), {totals['GPU']:g} GPU(s), "
                f"{totals['CPU']:g} CPU(s){dashboard}")

    def check(self, grid: Grid, resources: dict[str, Resources]) -> None:
        check_satisfiable(grid, resources, self.nodes(), self.where)
        self.resources = resources

    def run(self, step: Step, params: dict[str, str], key: str, parent_run_id: str,
            experiment_id: str) -> tuple[str, Placement]:
        """Runs the step as a Ray task and waits for it in this thread; (its run id, where it ran)."""
        request = self.resources[step.entry]
        task = self.remote.options(num_gpus=request.gpus, num_cpus=request.cpus, name=f"{step.entry}:{step.label}")
        return self.ray.get(task.remote(self.launch(), step.entry, params, key, parent_run_id, experiment_id,
                                        step.tags))

    def is_death(self, error: BaseException) -> bool:
        return isinstance(error, self.death_errors)

    def close(self) -> None:
        self.ray.shutdown()  # ends the tasks still running: their processes die with their workers


def _check_reachable(address: str) -> None:
    """A Ray address that does not answer is refused within seconds (Ray itself would retry for a minute)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            return
    except (OSError, ValueError) as error:
        raise XstiltsInputError(f"ray_address {address!r}: nothing answers at {host}:{port} "
                                f"({type(error).__name__}); expected empty (a local Ray instance), auto, "
                                "host:port of a Ray head, or ray://host:10001") from None


class GridRun:
    """One pass over a grid: starts each step once its upstream steps have run ids, reuses or launches it, retries
    a step that died, blocks the steps downstream of a failure, and counts."""

    def __init__(self, grid: Grid, version: str, force: set[str], parent_run_id: str, experiment_id: str,
                 executor, max_retries: int):
        self.grid, self.version, self.force = grid, version, force
        self.parent_run_id, self.experiment_id = parent_run_id, experiment_id
        self.executor, self.max_retries = executor, max_retries
        self.run_ids: dict[str, str] = {}
        self.records: list[dict] = []
        self.logged = 0  # records counted in the study run's metrics
        self.downstream: dict[str, list[Step]] = {step.key: [] for step in grid.steps}
        for step in grid.steps:
            for key in set(step.upstream()):
                self.downstream[key].append(step)

    def resolved(self, step: Step) -> dict[str, str]:
        return {name: ",".join(self.run_ids[key] for key in value.keys) if isinstance(value, StepRef) else str(value)
                for name, value in step.params.items()}

    def run(self) -> None:
        waiting = {step.key: len(set(step.upstream())) for step in self.grid.steps}
        ready = deque(step for step in self.grid.steps if not waiting[step.key])
        running: dict[Future, tuple[Step, float, int]] = {}  # step, when it was first started, attempt
        # A thread per running step: the cache lookups of steps made ready together do not wait for each other.
        pool = ThreadPoolExecutor(max_workers=self.executor.slots, thread_name_prefix="step")
        try:
            while ready or running:
                while ready:
                    step = ready.popleft()
                    running[pool.submit(self._reuse_or_run, step, self.resolved(step))] = (step, time.monotonic(), 1)
                self._log_counts()  # after the steps that became ready have started: a server call takes a while
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    step, started, attempt = running.pop(future)
                    outcome = future.result()
                    if outcome.status == "died" and attempt <= self.max_retries:
                        click.echo(f"retry   {step.label} (attempt {attempt + 1} of {self.max_retries + 1}): "
                                   f"{outcome.error}")
                        retry = pool.submit(self._reuse_or_run, step, self.resolved(step))
                        running[retry] = (step, started, attempt + 1)
                        continue
                    if outcome.status == "died":
                        outcome.status = "failed"
                    ready.extend(self._record(step, outcome, time.monotonic() - started, waiting))
            self._log_counts()
        except KeyboardInterrupt:  # a stopped study starts no more steps; the running ones got the signal
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _forced(self, step: Step) -> bool:
        return step.entry in self.force or "all" in self.force

    def _reuse_or_run(self, step: Step, params: dict[str, str]) -> Outcome:
        """Runs in a pool thread: the step's FINISHED run with the same cache key, or a new run by the executor."""
        key = cache_key(step.entry, params, self.version)
        try:
            cached = None if self._forced(step) else tracking.reusable_run(self.experiment_id, key)
            if cached:
                return Outcome("cached", cached)
            run_id, placement = self.executor.run(step, params, key, self.parent_run_id, self.experiment_id)
        except Exception as error:  # one failed step must not stop the independent ones
            message = " ".join(str(error).split())[:300]
            if self.executor.is_death(error):
                # A process that died could not end its run; no run of this step may stay RUNNING.
                tracking.fail_running_runs(self.experiment_id, key)
                return Outcome("died", error=message)
            return Outcome("failed", error=message)
        return Outcome("done", run_id, placement=placement)

    def _record(self, step: Step, outcome: Outcome, seconds: float, waiting: dict[str, int]) -> list[Step]:
        """Records a step's outcome; returns the steps it made ready (and records those it blocked)."""
        if outcome.run_id:
            self.run_ids[step.key] = outcome.run_id
        where = {"node": outcome.placement.node, "devices": outcome.placement.devices} if outcome.placement else {}
        self.records.append({"step": step.label, "entry": step.entry, "status": outcome.status,
                             "run_id": outcome.run_id, "seconds": round(seconds, 1), **where,
                             **({"error": outcome.error} if outcome.error else {})})
        click.echo(f"[{len(self.records):>3}/{len(self.grid.steps)}] {outcome.status:<7} {step.label}"
                   + (f"  ({outcome.run_id})" if outcome.run_id else f"  ({outcome.error})"))
        on = f"on {outcome.placement.describe()}; " if outcome.placement else ""
        click.echo(f"          {on}" + ", ".join(f"{name} {value}" for name, value in self.counts().items()))
        ready = []
        for downstream in self.downstream[step.key]:
            if downstream.key in waiting and not outcome.run_id:
                del waiting[downstream.key]  # recorded blocked once, whichever upstream step failed first
                ready.extend(self._record(downstream, Outcome("blocked", error="an upstream step failed"), 0.0,
                                          waiting))
            elif downstream.key in waiting:
                waiting[downstream.key] -= 1
                if not waiting[downstream.key]:
                    del waiting[downstream.key]
                    ready.append(downstream)
        return ready

    def _log_counts(self) -> None:
        """The counts as metrics of the study run, at the step of the latest record, where records were added."""
        if self.records and self.logged != len(self.records):
            self.logged = len(self.records)
            tracking.log_metrics({f"grid/{name}": value for name, value in self.counts().items()}, step=self.logged)

    def counts(self) -> dict[str, int]:
        counts = {status: sum(record["status"] == status for record in self.records) for status in STATUSES}
        return {**counts, "remaining": len(self.grid.steps) - len(self.records)}


class Heartbeat:
    """Refreshes the study run's heartbeat tag every few seconds from a background thread while the driver lives."""

    def __init__(self, run_id: str):
        self.run_id, self.stopped = run_id, threading.Event()
        self.thread = threading.Thread(target=self._beat, name="study-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def _beat(self) -> None:
        while not self.stopped.wait(HEARTBEAT_INTERVAL_S):
            try:
                tracking.log_to_run(self.run_id, tags={HEARTBEAT_TAG: f"{time.time():.0f}"})
            except Exception as error:  # a server that hiccups must not stop the study; a later beat may get through
                click.echo(f"heartbeat of study run {self.run_id} not written: {type(error).__name__}", err=True)

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


def driver_tags() -> dict[str, str]:
    """The tags a study run starts with (in the same call as its study key: no driver sees it without them)."""
    return {DRIVER_TAG: driver_identity(), HEARTBEAT_TAG: f"{time.time():.0f}"}


def driver_identity() -> str:
    """host pid start-time of this process: on the same host, tells a dead driver at once (pids are reused)."""
    return f"{socket.gethostname()} {os.getpid()} {psutil.Process().create_time():.0f}"


def driver_is_alive(tags: dict[str, str], now: float) -> tuple[bool, str]:
    """Whether the driver of a RUNNING study run lives, from its tags, and why: a process on this host is asked
    directly; elsewhere its heartbeat must be younger than HEARTBEAT_TIMEOUT_S."""
    heartbeat = tags.get(f"{tracking.TAG_PREFIX}{HEARTBEAT_TAG}")
    driver = tags.get(f"{tracking.TAG_PREFIX}{DRIVER_TAG}", "")
    if heartbeat is None:
        return False, "it has no heartbeat"
    host, _, process = driver.partition(" ")
    if host == socket.gethostname() and process:
        pid, _, started = process.partition(" ")
        try:
            alive = f"{psutil.Process(int(pid)).create_time():.0f}" == started
        except (psutil.NoSuchProcess, ValueError):
            alive = False
        return alive, f"its driver, process {pid} on this host, is {'alive' if alive else 'gone'}"
    age = now - float(heartbeat)
    return age < HEARTBEAT_TIMEOUT_S, f"its heartbeat is {age:.0f} s old (driver {driver or 'unknown'})"


def dead_study_runs(run_ids: list[str], tags_of: Callable[[str], dict[str, str]]) -> list[tuple[str, str]]:
    """(run id, why) of the RUNNING study runs among `run_ids` whose driver is gone, which the caller takes over;
    refuses, naming it, a study run whose driver is alive."""
    dead = []
    for run_id in run_ids:
        alive, why = driver_is_alive(tags_of(run_id), time.time())
        if alive:
            raise XstiltsInputError(
                f"study run {run_id} of this config is RUNNING and {why}: another driver runs this study; wait for "
                f"it or stop it (a killed driver's study is taken over once its heartbeat is "
                f"{HEARTBEAT_TIMEOUT_S:.0f} s old, at once on the same host)")
        dead.append((run_id, why))
    return dead

"""A study shared by workers: created once with its trial budget queued, joined by name, worked to its end.

The worker that creates a study queues its whole trial budget as waiting trials; every worker (that one, the
`--workers` it starts, and workers started later on any machine) claims waiting trials one at a time, so a budget of N
runs exactly N trials however many workers share it. A trial whose worker dies (heartbeat lost, or its process gone
on this machine) is failed, its runs are ended FAILED, and a retry of it (same params) is queued; workers wait for
other workers' running trials, so no retry is left unclaimed.
"""

import json
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from components import tracking
from components.errors import XstiltsInputError
from tuning.space import SearchSpace
from tuning.storage import StudyStorage, died_on_this_machine, one_worker_only

PLAN_ATTR = "xlt.plan"  # what joining workers must agree on
STUDY_RUN_ATTR = "xlt.study_run_id"  # set once the budget is queued: joining workers wait for it
WORKER_ATTR = "xlt.worker"  # the worker running a trial
MAX_RETRIES = 2  # a trial that keeps killing its workers is not retried forever
POLL_S = 2.0
PLAN_WAIT_S = 10.0
QUEUE_WAIT_S = 120.0

PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    # Median: prune below the median of earlier trials at the same evaluation, once two trials have finished.
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3),
    "none": optuna.pruners.NopPruner,
}


@dataclass(frozen=True)
class StudyPlan:
    """What a study is: every worker that joins it must bring the same plan."""

    name: str
    cell: dict[str, str]  # task, method, model, intermediate
    objective: str  # the metric key of the English-dev selection metric
    space: SearchSpace
    n_trials: int
    pruner: str

    def attrs(self) -> dict:
        return {"cell": self.cell, "objective": self.objective, "space": self.space.fingerprint(),
                "n_trials": self.n_trials, "pruner": self.pruner}


def sampler_for(seed: int, trial_number: int, n_trials: int) -> optuna.samplers.TPESampler:
    """The sampler of one trial: seeded by the study seed and the trial number, so one worker's study is reproducible
    and workers that start together do not draw the same first values. The first third of the budget (2 to 10
    trials) samples at random, as TPE needs a few trials before it models anything."""
    return optuna.samplers.TPESampler(seed=seed + trial_number, n_startup_trials=min(10, max(2, n_trials // 3)))


def create_or_join(storage: StudyStorage, plan: StudyPlan) -> tuple[optuna.Study, bool]:
    """The study `plan.name` and whether this call created it.

    Raises:
        XstiltsInputError: a study of that name exists with another direction, was not made by `tune`, has
            another plan (cell, objective, space, budget or pruner), or is run by another live worker on SQLite.
    """
    try:
        study = optuna.create_study(study_name=plan.name, storage=storage.storage, direction="maximize",
                                    pruner=PRUNERS[plan.pruner](), load_if_exists=False)
        study.set_user_attr(PLAN_ATTR, plan.attrs())
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=plan.name, storage=storage.storage, pruner=PRUNERS[plan.pruner]())
    directions = [direction.name.lower() for direction in study.directions]
    if directions != ["maximize"]:
        raise XstiltsInputError(
            f"study {plan.name!r} in {storage.shown} exists with direction {', '.join(directions)}; this objective "
            f"({plan.objective}) is maximized: choose another study_name, or delete that study")
    existing = _wait_for_attr(study, PLAN_ATTR, PLAN_WAIT_S)
    if existing is None:
        raise XstiltsInputError(f"study {plan.name!r} in {storage.shown} was not created by the tune entry point (it "
                                "has no plan); choose another study_name")
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if storage.one_worker and any(WORKER_ATTR not in trial.user_attrs or not died_on_this_machine(
            trial.user_attrs[WORKER_ATTR]) for trial in running):
        raise one_worker_only(storage.shown)  # another live worker runs this study
    wanted = json.loads(json.dumps(plan.attrs()))  # as stored: tuples become lists
    differing = sorted(key for key in wanted if existing.get(key) != wanted[key])
    if differing:
        raise XstiltsInputError(
            f"study {plan.name!r} was created with another {', '.join(differing)}: "
            + "; ".join(f"{key} {existing.get(key)!r} there, {wanted[key]!r} here" for key in differing)
            + ". Join it with the same options, or choose another study_name")
    return study, False


def queue_budget(study: optuna.Study, n_trials: int, study_run_id: str) -> None:
    """The creating worker queues the budget, then publishes the study run, which joining workers wait for."""
    for _ in range(n_trials):
        study.enqueue_trial({})
    study.set_user_attr(STUDY_RUN_ATTR, study_run_id)


def study_run_of(study: optuna.Study) -> str:
    """The study's MLflow run, once its creating worker has queued the budget."""
    run_id = _wait_for_attr(study, STUDY_RUN_ATTR, QUEUE_WAIT_S)
    if run_id is None:
        raise XstiltsInputError(f"study {study.study_name!r} has no queued budget after {QUEUE_WAIT_S:.0f} s: its "
                                "creating worker died while starting; delete the study or choose another study_name")
    return run_id


def _wait_for_attr(study: optuna.Study, name: str, seconds: float):
    deadline = time.monotonic() + seconds
    while (value := study.user_attrs.get(name)) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)
    return value


class DeadWorkerTrials:
    """What happens to a trial whose worker died, once it is FAIL: a retry is queued, and the dead worker's trial and
    worker runs are ended FAILED (its study run, if it created the study, is ended by the study's last worker)."""

    def __init__(self, study_name: str):
        self.study_name = study_name
        with _experimental_api():
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.retry(study, trial)
        for role in ("trial", "worker"):
            tags = {"tune_study": self.study_name, "tune_worker": trial.user_attrs.get(WORKER_ATTR, ""),
                    "tune_role": role}
            for run_id in tracking.running_run_ids(tags):
                tracking.terminate_run(run_id, "FAILED")


class Worker:
    """Claims and runs waiting trials until none is left (or the time budget is spent)."""

    def __init__(self, study: optuna.Study, storage: StudyStorage, on_dead_trial: DeadWorkerTrials,
                 run_trial: Callable[[optuna.Trial], float], worker: str, sampler_seed: int, n_trials: int,
                 deadline: float):
        self.study, self.storage, self.on_dead_trial = study, storage, on_dead_trial
        self.run_trial, self.worker, self.deadline = run_trial, worker, deadline
        self.sampler_seed, self.n_trials = sampler_seed, n_trials
        self.study_id = storage.storage.get_study_id_from_name(study.study_name)

    def run(self) -> list[int]:
        """The numbers of the trials this worker ran."""
        ran = []
        while time.monotonic() < self.deadline:
            self.fail_dead_trials()
            trial = self.claim()
            if trial is not None:
                self.run_one(trial)
                ran.append(trial.number)
            elif self.trials(TrialState.RUNNING):
                time.sleep(POLL_S)  # another worker's trial may still die and come back as a retry
            else:
                break
        return ran

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.storage.storage.get_all_trials(self.study_id, deepcopy=False, states=states)

    def fail_dead_trials(self) -> None:
        if self.storage.heartbeats:
            with _experimental_api():
                fail_stale_trials(self.study)  # calls on_dead_trial, the storage's stale-trial callback
            return
        for trial in self.trials(TrialState.RUNNING):
            worker = trial.user_attrs.get(WORKER_ATTR)
            if worker and died_on_this_machine(worker) and self._set_state(trial.number, TrialState.FAIL):
                self.on_dead_trial(self.study, self.storage.storage.get_trial(self._trial_id(trial.number)))

    def claim(self) -> optuna.Trial | None:
        """A waiting trial, now RUNNING for this worker, or None. `Study.ask` is not used because it creates a new
        trial when the queue is empty, which would run past the budget."""
        for waiting in self.trials(TrialState.WAITING):
            if self._set_state(waiting.number, TrialState.RUNNING):
                trial_id = self._trial_id(waiting.number)
                if self.storage.heartbeats:
                    self.storage.storage.record_heartbeat(trial_id)  # before anything can die unrecorded
                self.study.sampler = sampler_for(self.sampler_seed, waiting.number, self.n_trials)
                trial = optuna.Trial(self.study, trial_id)
                trial.set_user_attr(WORKER_ATTR, self.worker)
                return trial
        return None

    def run_one(self, trial: optuna.Trial) -> None:
        # skip_if_finished: another worker may have failed this trial for a late heartbeat and queued its retry.
        try:
            with _Heartbeat(self.storage, self._trial_id(trial.number)):
                value = self.run_trial(trial)
        except optuna.TrialPruned:
            self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # failed by another worker meanwhile, as above: its retry runs instead
        except BaseException:
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        self.study.tell(trial, value, skip_if_finished=True)

    def _trial_id(self, number: int) -> int:
        return self.storage.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _set_state(self, number: int, state: TrialState) -> bool:
        """Moves trial `number` to `state` unless another worker got there first."""
        try:
            return self.storage.storage.set_trial_state_values(self._trial_id(number), state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False


@contextmanager
def _experimental_api() -> Iterator[None]:
    """Optuna marks its heartbeat and retry helpers experimental; they are its documented way to recover from dead
    workers, so their warnings are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


class _Heartbeat:
    """Records the running trial's heartbeat every interval from a background thread (database storages only)."""

    def __init__(self, storage: StudyStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        if self.storage.heartbeats:
            self.thread.start()

    def __exit__(self, *exc_info):
        if self.storage.heartbeats:
            self.stop.set()
            self.thread.join()

    def _beat(self) -> None:
        interval = self.storage.storage.get_heartbeat_interval()
        while not self.stop.wait(interval):
            self.storage.storage.record_heartbeat(self.trial_id)


@dataclass(frozen=True)
class StudyState:
    """A study's trials as they stand: counts by state, the best complete trial, and whether any is still to run."""

    counts: dict[str, int]
    best: FrozenTrial | None
    open: bool

    @classmethod
    def of(cls, study: optuna.Study) -> "StudyState":
        trials = study.get_trials(deepcopy=False)
        complete = [trial for trial in trials if trial.state is TrialState.COMPLETE]
        counts = {state.name.lower(): sum(trial.state is state for trial in trials) for state in TrialState}
        return cls(counts, max(complete, key=lambda trial: trial.value) if complete else None,
                   open=bool(counts["waiting"] or counts["running"]))

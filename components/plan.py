"""The plan of a study grid (`main -P plan=true`): every step, cached or to run, and an estimate of the compute the
steps to run need, from FINISHED runs in the tracking store. It reads the store and writes nothing to it: no run is
created, ended or marked, so a plan may be asked for while a study runs.

A step is cached when the experiment holds a FINISHED run with its cache key (`components.grid.cache_key`, as `main`
computes it, and the newest such run, as `tracking.reusable_run` picks it; that function is not called here because
it marks FAILED the RUNNING runs of the key, which a plan asked during a live study must not do). A step downstream
of a step to run is to run as well: its upstream run ids, part of its key, are not known yet.

A step's items: a training step trains min(its `max_train_examples` cap, the training-set size) x `epochs` items,
the size being the `n_train_available` that a FINISHED run of the same task, source language and data settings
logged (any model: sizes belong to the data), else the count of the data bundle or the Hub's local cache (nothing is
downloaded); a language adapter trains `max_steps` x `batch_size` texts; an evaluate step scores, in each of its
languages, min(its `max_eval_examples` cap (retrieval: `max_pairs`), the size a FINISHED evaluation of the task under
the same protocol scored uncapped, else the local count; retrieval tasks are not counted). With a cap and no size
known, the cap is taken (an upper bound).

A step's estimate, on the device kind its entry point asks for in the config's `resources` (`gpus` > 0: GPU),
else this machine's kind:
- measured: from FINISHED runs of the same entry point, task, model and method on the same device kind (a run that
  logged `peak_gpu_mb` ran on a GPU). Training: the runs' mean overhead (wall time outside `trainer.train()`:
  loading, encoding, upload) plus their seconds per trained item (`train/*/train_runtime`, selection evaluations
  included, over their items x epochs) times the step's items. Evaluation: the runs' wall seconds per scored item
  (`eval_examples/*/*/n`) times the step's items.
- flop-rate: for a model without such runs (XLM-R Large before its first run), the step's FLOPs at the FLOP rate
  that all finished training runs on the same device kind achieved (sum of `train/*/total_flos` over sum of
  `train/*/train_runtime`). FLOPs are the Trainer's own count, 6 x parameters without embeddings x tokens for
  training, and 2 x parameters x tokens for scoring (forward only), with tokens = items x `max_length` (an upper
  bound: batches are padded to their longest item). No overhead is added.
- none: the step's items are unknown, or nothing finished on its device kind to measure a rate from.
"""

import functools
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import mean

import mlflow
import torch
from mlflow.tracking import MlflowClient
from transformers import AutoConfig, AutoModel, XLMRobertaConfig

from components import executors, tracking
from components.data import evaluation_set, resolve_protocol, training_stages
from components.errors import XstiltsInputError
from components.grid import Grid, Step, StepRef, cache_key
from components.models import MODELS, load_pretrained, resolve_model
from components.options import logged_defaults
from components.tasks import TaskType, get_task

TRAINING_ENTRIES = ("lang_adapter", "intermediate", "target")
CPU, GPU = "CPU", "GPU"
TRAINING_FLOPS_PER_PARAMETER_TOKEN = 6  # forward and backward: the Trainer's `floating_point_ops`
SCORING_FLOPS_PER_PARAMETER_TOKEN = 2  # forward only

# The registry's Hub models' sizes, copied from their config.json on the Hub (huggingface.co/<id>), for the FLOP-rate
# estimate when neither the Hub nor its local cache answers (offline, before the model's first run).
HUB_CONFIGS = {
    "xlm-roberta-large": {"vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24,
                          "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 514,
                          "type_vocab_size": 1},
    "xlm-roberta-base": {"vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                         "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1},
}


def summed(values: dict[str, str | float], pattern: str) -> float:
    """The sum of the values whose key matches `pattern` whole (a stage-prefixed param, a per-task metric)."""
    return sum(float(value) for key, value in values.items() if re.fullmatch(pattern, key))


@dataclass(frozen=True)
class FinishedRun:
    """A FINISHED step run, as far as the plan reads it."""

    run_id: str
    entry: str
    params: dict[str, str]
    metrics: dict[str, float]
    seconds: float  # wall time
    device: str

    @classmethod
    def of(cls, run) -> "FinishedRun":
        metrics = run.data.metrics
        return cls(run.info.run_id, run.data.tags.get(f"{tracking.TAG_PREFIX}phase", ""), run.data.params, metrics,
                   (run.info.end_time - run.info.start_time) / 1000, GPU if "peak_gpu_mb" in metrics else CPU)

    @property
    def task(self) -> str:
        return self.params.get("retrieval_task") or self.params.get("task", "")

    def describes(self, entry: str, task: str, model: str, method: str, device: str) -> bool:
        params = self.params
        return (self.entry, self.task, params.get("model", params.get("encoder_model")), params.get("method", ""),
                self.device) == (entry, task, model, method, device)

    @property
    def train_seconds(self) -> float:
        return summed(self.metrics, r"train/[^/]+/train_runtime")

    @property
    def trained_items(self) -> float:
        if self.entry == "lang_adapter":
            return float(self.params["max_steps"]) * float(self.params["batch_size"])
        return summed(self.params, r"(stage\d+_)?n_train_examples") * float(self.params.get("epochs", 0))

    @property
    def scored_items(self) -> float:
        return summed(self.metrics, r"eval_examples/[^/]+/[^/]+/n")


@dataclass(frozen=True)
class Work:
    """What a step to run processes: `items` (None: unknown, `basis` says why), each up to `tokens_per_item` long."""

    items: float | None
    tokens_per_item: int
    basis: str  # where the count comes from


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    kind: str  # measured, flop-rate or none
    basis: str
    runs: tuple[str, ...] = ()


@dataclass
class PlannedStep:
    step: Step
    status: str  # cached or to run
    run_id: str = ""
    device: str = ""
    estimate: Estimate | None = None


@dataclass
class Store:
    """What the plan reads from the tracking store: the experiment's FINISHED runs by cache key, and every FINISHED
    step run of the store (any experiment) to estimate from."""

    finished_by_key: dict[str, str]
    runs: list[FinishedRun]

    @classmethod
    def read(cls, experiment_id: str | None) -> "Store":
        """One search of the store; `experiment_id` None (no such experiment yet): nothing is cached."""
        tracking.connect()
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"])
        finished_by_key: dict[str, str] = {}
        for run in runs:  # newest first, as `tracking.reusable_run` picks
            key = run.data.tags.get(tracking.CACHE_KEY_TAG)
            if key and run.info.experiment_id == experiment_id:
                finished_by_key.setdefault(key, run.info.run_id)
        steps = [FinishedRun.of(run) for run in runs]
        return cls(finished_by_key, [run for run in steps if run.entry in (*TRAINING_ENTRIES, "evaluate")])


def plan_experiment_id() -> str | None:
    """The experiment a `main` started here would run in (as MLflow picks it, without starting a run): the one
    `mlflow run` set (MLFLOW_EXPERIMENT_ID), else MLFLOW_EXPERIMENT_NAME's, else the Default experiment."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    tracking.connect()
    experiment = MlflowClient().get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default")
    return experiment.experiment_id if experiment else None


@dataclass(frozen=True)
class StepFacts:
    """A step's params with its entry point's defaults, and what its estimate is matched on."""

    entry: str
    params: dict[str, str]
    task: str
    model: str
    method: str
    protocol: str  # resolved; "" for language adapters and retrieval
    max_length: int


def step_facts(step: Step, steps: dict[str, Step]) -> StepFacts:
    params = {**logged_defaults(step.entry), **{name: str(value) for name, value in step.params.items()
                                                if not isinstance(value, StepRef)}}
    if step.entry == "lang_adapter":
        return StepFacts(step.entry, params, "", params["model"], "", "", int(params["max_length"]))
    if step.entry in TRAINING_ENTRIES:
        return StepFacts(step.entry, params, params["task"], params["model"], params["method"],
                         _protocol(params["task"], params["protocol"]), int(params["max_length"]))
    if params["retrieval_task"]:
        encoder = step.params.get("encoder_run_id")
        model = (step_facts(steps[encoder.keys[0]], steps).model if isinstance(encoder, StepRef)
                 else params["encoder_model"])
        return StepFacts(step.entry, params, params["retrieval_task"], model, "", "", MODELS[model].max_length
                         if model in MODELS else 0)
    trained = step_facts(steps[step.params["train_run_id"].keys[0]], steps)
    return StepFacts(step.entry, params, trained.task, trained.model, trained.method, trained.protocol,
                     trained.max_length)


def _protocol(task: str, protocol: str) -> str:
    """The protocol `auto` stands for; "" for a multi-task run (each of its tasks resolves its own)."""
    return "" if "," in task else resolve_protocol(get_task(task), protocol)


def _data_settings(params: dict[str, str], task: str) -> tuple:
    """What a training set's size depends on: the task, its language, protocol and the data options."""
    return (task, params.get("source_lang", "en"), _protocol(task, params.get("protocol", "auto")),
            params.get("train_source_override", ""), params.get("select_holdout", "0"))


def step_work(facts: StepFacts, runs: list[FinishedRun]) -> Work:
    params = facts.params
    if facts.entry == "lang_adapter":
        return Work(float(params["max_steps"]) * float(params["batch_size"]), facts.max_length,
                    f"{params['max_steps']} steps x batch {params['batch_size']}")
    if facts.entry in TRAINING_ENTRIES:
        return _training_work(facts, runs)
    return _scoring_work(facts, runs)


def _training_work(facts: StepFacts, runs: list[FinishedRun]) -> Work:
    params, epochs, cap = facts.params, float(facts.params["epochs"]), int(facts.params["max_train_examples"])
    settings = _data_settings(params, facts.task)
    sized = next((run for run in runs if run.entry in ("intermediate", "target") and run.task == facts.task
                  and _data_settings(run.params, run.task) == settings
                  and any(re.fullmatch(r"(stage\d+_)?n_train_available", key) for key in run.params)), None)
    if sized:
        available = summed(sized.params, r"(stage\d+_)?n_train_available")
        items = min(cap, available) if cap else available
        return Work(items * epochs, facts.max_length, f"{items:,.0f} training items (size {available:,.0f} from "
                    f"run {sized.run_id}{f', cap {cap:,}' if cap else ''}) x {_epochs(epochs)}")
    available = local_training_size(*settings) if settings[2] else None
    if available is not None:
        items = min(cap, available) if cap else available
        return Work(items * epochs, facts.max_length, f"{items:,} training items (size {available:,} counted in the "
                    f"local data{f', cap {cap:,}' if cap else ''}) x {_epochs(epochs)}")
    if cap:
        return Work(cap * epochs, facts.max_length, f"at most {cap:,} training items (the cap; size unknown) x "
                    f"{_epochs(epochs)}")
    return Work(None, facts.max_length, f"training-set size unknown: no finished run of {facts.task} "
                f"({settings[1]}, protocol {settings[2]}) logged it, the local data lacks it, and no "
                "max_train_examples cap")


def _epochs(epochs: float) -> str:
    return f"{epochs:g} epoch{'' if epochs == 1 else 's'}"


def _scoring_work(facts: StepFacts, runs: list[FinishedRun]) -> Work:
    spec = get_task(facts.task)
    retrieval = spec.task_type is TaskType.RETRIEVAL
    cap_name = "max_pairs" if retrieval else "max_eval_examples"
    cap = int(facts.params[cap_name])
    langs = [lang.strip() for lang in facts.params["langs"].split(",") if lang.strip()] or list(spec.langs)
    sizes: dict[str, tuple[float, str]] = {}
    for run in runs:
        if run.entry != "evaluate" or run.task != facts.task or (
                not retrieval and run.params.get("data_protocol") != facts.protocol):
            continue
        run_cap = int(run.params.get(cap_name, 0))
        for lang in langs:
            scored = run.metrics.get(tracking.metric_key("eval_examples", facts.task, lang, "n"))
            if lang not in sizes and scored is not None and (not run_cap or scored < run_cap):
                sizes[lang] = (scored, run.run_id)
    for lang in langs:
        local = None if retrieval or lang in sizes else local_evaluation_size(facts.task, facts.protocol, lang)
        if local is not None:
            sizes[lang] = (local, "")
    unknown = [lang for lang in langs if lang not in sizes]
    if unknown and not cap:
        return Work(None, facts.max_length, f"evaluation sizes unknown in {len(unknown)} of {len(langs)} languages "
                    f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): no finished uncapped "
                    f"evaluation of {facts.task} under protocol {facts.protocol or 'any'}, the local data lacks them, "
                    f"and no {cap_name} cap")
    # A language of unknown size counts at the cap, an upper bound.
    items = sum((min(cap, sizes[lang][0]) if cap else sizes[lang][0]) if lang in sizes else cap for lang in langs)
    size_runs = tuple(sorted({run_id for _, run_id in sizes.values() if run_id}))
    counted = sum(not run_id for _, run_id in sizes.values())
    sources = [*([f"{len(sizes) - counted} sizes from runs {', '.join(size_runs)}"] if size_runs else []),
               *([f"{counted} counted in the local data"] if counted else []),
               *([f"cap {cap:,} per language"] if cap else []), *([f"{len(unknown)} at the cap"] if unknown else [])]
    return Work(float(items), facts.max_length, f"{items:,.0f} items in {len(langs)} languages ({'; '.join(sources)})")


@contextmanager
def hub_offline():
    """Within it, `datasets` and `huggingface_hub` read their local cache only: a plan downloads nothing."""
    import datasets
    import huggingface_hub

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


@functools.cache
def local_training_size(task: str, lang: str, protocol: str, train_source: str, select_holdout: str) -> int | None:
    """The items a run of `task` trains on before caps (every stage's), counted in the data bundle or the Hub's
    local cache; None where neither holds them."""
    try:
        with hub_offline():
            stages = training_stages(get_task(task), protocol, lang, train_source=train_source,
                                     select_holdout=int(select_holdout))
    except XstiltsInputError:
        return None
    return sum(len(stage.train) for stage in stages)


@functools.cache
def local_evaluation_size(task: str, protocol: str, lang: str) -> int | None:
    """The items an evaluation of `task` scores in `lang` under `protocol`, counted as `local_training_size`."""
    try:
        with hub_offline():
            return len(evaluation_set(get_task(task), protocol, lang).examples)
    except XstiltsInputError:
        return None


def flop_rates(runs: list[FinishedRun]) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Device kind -> (FLOP/s that its finished training runs achieved together, their run ids)."""
    rates = {}
    for device in (CPU, GPU):
        measured = [run for run in runs if run.device == device and run.train_seconds > 0
                    and summed(run.metrics, r"train/[^/]+/total_flos") > 0]
        if measured:
            flos = sum(summed(run.metrics, r"train/[^/]+/total_flos") for run in measured)
            rates[device] = (flos / sum(run.train_seconds for run in measured),
                             tuple(run.run_id for run in measured))
    return rates


def parameter_count(model: str) -> tuple[int, str] | None:
    """Parameters without embeddings (what the Trainer's FLOP count multiplies), and where the size came from: the
    model's config.json where it loads offline (a folder, the built offline model, the Hub cache), else the Hub
    config copied into HUB_CONFIGS; None for a model neither knows."""
    try:
        config, source = load_pretrained(AutoConfig, resolve_model(model)), "its config.json"
    except XstiltsInputError:
        if model not in HUB_CONFIGS:
            return None
        config, source = XLMRobertaConfig(**HUB_CONFIGS[model]), "the Hub config.json copied into components/plan.py"
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        encoder = AutoModel.from_config(config)
    return encoder.num_parameters(exclude_embeddings=True), source


@dataclass
class Estimator:
    runs: list[FinishedRun]
    rates: dict[str, tuple[float, tuple[str, ...]]] = field(init=False)
    sizes: dict[str, tuple[int, str] | None] = field(default_factory=dict)

    def __post_init__(self):
        self.rates = flop_rates(self.runs)

    def estimate(self, facts: StepFacts, work: Work, device: str) -> Estimate:
        if work.items is None:
            return Estimate(None, "none", work.basis)
        matched = [run for run in self.runs
                   if run.describes(facts.entry, facts.task, facts.model, facts.method, device)]
        training = facts.entry in TRAINING_ENTRIES
        measured = [run for run in matched if (run.train_seconds > 0 and run.trained_items > 0 if training
                                               else run.scored_items > 0)]
        if measured:
            return self._measured(measured, work, training)
        return self._from_flop_rate(facts, work, device, training)

    @staticmethod
    def _measured(runs: list[FinishedRun], work: Work, training: bool) -> Estimate:
        ids = tuple(run.run_id for run in runs)
        if training:
            per_item = sum(run.train_seconds for run in runs) / sum(run.trained_items for run in runs)
            overhead = mean(run.seconds - run.train_seconds for run in runs)
            return Estimate(overhead + per_item * work.items, "measured",
                            f"{overhead:.0f} s overhead + {per_item:.4g} s/item x {work.basis}", ids)
        per_item = sum(run.seconds for run in runs) / sum(run.scored_items for run in runs)
        return Estimate(per_item * work.items, "measured", f"{per_item:.4g} s/item x {work.basis}", ids)

    def _from_flop_rate(self, facts: StepFacts, work: Work, device: str, training: bool) -> Estimate:
        if device not in self.rates:
            return Estimate(None, "none", f"no finished run of this entry point, task, model and method on {device}, "
                                          f"and no finished training run on {device} to take a FLOP rate from")
        if facts.model not in self.sizes:
            self.sizes[facts.model] = parameter_count(facts.model)
        size = self.sizes[facts.model]
        if size is None or not work.tokens_per_item:
            return Estimate(None, "none", f"no finished run of this step's kind, and the size or input length of "
                                          f"{facts.model} is unknown for a FLOP estimate")
        parameters, source = size
        rate, ids = self.rates[device]
        per_token = TRAINING_FLOPS_PER_PARAMETER_TOKEN if training else SCORING_FLOPS_PER_PARAMETER_TOKEN
        flops = per_token * parameters * work.items * work.tokens_per_item
        return Estimate(flops / rate, "flop-rate",
                        f"{per_token} x {parameters:,} parameters ({source}) x {work.basis} x "
                        f"{work.tokens_per_item} tokens = {flops:.3g} FLOPs at {rate:.3g} FLOP/s ({device} rate of "
                        f"{len(ids)} finished training runs)", ids)


def plan(grid: Grid, resources: dict[str, executors.Resources], version: str, forced: set[str], store: Store
         ) -> list[PlannedStep]:
    """Every step of `grid`, cached or to run, with the estimate of each step to run on the device kind its entry
    point's `resources` ask for."""
    steps = {step.key: step for step in grid.steps}
    run_ids: dict[str, str] = {}
    estimator = Estimator(store.runs)
    planned = []
    for step in grid.steps:  # upstream steps first
        if all(key in run_ids for key in step.upstream()) and step.entry not in forced and "all" not in forced:
            resolved = {name: ",".join(run_ids[key] for key in value.keys) if isinstance(value, StepRef)
                        else str(value) for name, value in step.params.items()}
            cached = store.finished_by_key.get(cache_key(step.entry, resolved, version))
            if cached:
                run_ids[step.key] = cached
                planned.append(PlannedStep(step, "cached", cached))
                continue
        facts = step_facts(step, steps)
        device = GPU if resources[step.entry].gpus > 0 else CPU
        work = step_work(facts, store.runs)
        planned.append(PlannedStep(step, "to run", device=device, estimate=estimator.estimate(facts, work, device)))
    return planned


def study_plan(grid: Grid, config: dict, version: str, forced: set[str]) -> str:
    """The plan of a study as `main` prints it: its steps' resources as `main` would ask for them on this machine
    (one GPU per step where it has GPUs, unless the config's `resources:` say otherwise)."""
    resources = executors.read_resources(config, tuple(dict.fromkeys(step.entry for step in grid.steps)),
                                         bool(executors.local_gpu_ids()))
    return report(plan(grid, resources, version, forced, Store.read(plan_experiment_id())))


def device_hours(planned: list[PlannedStep]) -> dict[str, float]:
    """The estimated hours of the steps to run, summed per device kind (steps without an estimate add nothing)."""
    return {device: sum(item.estimate.seconds for item in planned if item.status == "to run" and item.device == device
                        and item.estimate.seconds is not None) / 3600 for device in (CPU, GPU)}


def report(planned: list[PlannedStep]) -> str:
    """One line per step, then the totals per device kind and the runs the estimates rest on."""
    lines = []
    for number, item in enumerate(planned, start=1):
        head = f"[{number:>3}/{len(planned)}] {item.status:<7} {item.step.label}"
        if item.status == "cached":
            lines.append(f"{head}  ({item.run_id})")
            continue
        estimate = item.estimate
        cost = f"{estimate.seconds / 3600:,.3f} {item.device}-h" if estimate.seconds is not None else "no estimate"
        lines.append(f"{head}  {cost} [{estimate.kind}] {estimate.basis}"
                     + (f"; runs {', '.join(estimate.runs)}" if estimate.kind == "measured" else ""))
    to_run = [item for item in planned if item.status == "to run"]
    lines.append(f"plan: {len(planned)} steps: {len(planned) - len(to_run)} cached, {len(to_run)} to run")
    hours = device_hours(planned)
    for device in (CPU, GPU):
        on_device = [item for item in to_run if item.device == device]
        if not on_device:
            continue
        kinds = {kind: [item for item in on_device if item.estimate.kind == kind]
                 for kind in ("measured", "flop-rate", "none")}
        estimated = len(on_device) - len(kinds["none"])
        lines.append(f"  {device}-hours {hours[device]:,.2f} for {estimated} of {len(on_device)} steps on {device}: "
                     f"{len(kinds['measured'])} measured, {len(kinds['flop-rate'])} from the FLOP rate, "
                     f"{len(kinds['none'])} with nothing to estimate from")
        measured_runs = sorted({run for item in kinds["measured"] for run in item.estimate.runs})
        if measured_runs:
            lines.append(f"    measured on runs: {', '.join(measured_runs)}")
        if kinds["flop-rate"]:
            lines.append(f"    FLOP rate from runs: {', '.join(kinds['flop-rate'][0].estimate.runs)}")
    return "\n".join(lines)

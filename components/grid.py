"""A study grid: its YAML config, and its expansion into the phase runs (steps) it needs, shared where possible.

A study crosses intermediate arms (none, one task, a task list; any source language) with target tasks, methods and
seeds. Each cell (arm x target x method x seed) is a chain of MLproject entry points; steps that several cells need
(an intermediate run, a language adapter) are one step; a language adapter's corpus leaves out what every target it
serves evaluates, under each target's protocol. A step names its upstream steps in its params (`StepRef`),
which the runner replaces with their run ids. Pure: nothing here runs or tracks anything.
"""

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components.corpus import studied_tasks
from components.data import choose_evaluation_split, english_training_gap, source_training_gap
from components.errors import XstiltsInputError, not_utf8
from components.methods import METHODS, NO_UPSTREAM, Method, unsupported_reason
from components.model_registry import DEFAULT_MODEL, check_max_length, check_model, hidden_state_count
from components.options import logged_defaults
from components.retrieval import RETRIEVAL_TASKS, check_files, task_paths
from components.settings import PROJECT_ROOT
from components.tasks import NO_INTERMEDIATE, TaskSpec, TaskType, check_obtainable, get_task
from tuning.best_params import DEFAULT_DIR, TunedCell, cell_key, intermediate_label, tuned_cell

DEFAULT_PROTOCOL = "auto"
SOURCE_LANG = "en"  # target tasks train on English: the zero-shot setting
CONFIG_KEYS = {"study", "model", "seeds", "methods", "intermediate", "targets", "lang_adapter", "lang_adapter_langs",
               "lang_adapter_fallback", "best_params_dir", "resources"}
RESOURCE_KINDS = ("gpus", "cpus")  # `resources: {<entry point>: {gpus: N, cpus: N}}`, per step of that entry point
@dataclass(frozen=True)
class ValueRange:
    """The values a numeric phase param takes: a number (an integer where `integer`) above `low`, or from `low` on
    where `inclusive`."""

    low: float
    inclusive: bool
    integer: bool

    @property
    def expected(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} {'>=' if self.inclusive else '>'} {self.low:g}"

    def admits(self, value) -> bool:
        if isinstance(value, bool) or (self.integer and not isinstance(value, int)):
            return False
        try:
            number = float(value)  # YAML reads 1e-5 (no dot) as a string
        except (TypeError, ValueError):
            return False
        return number >= self.low if self.inclusive else number > self.low


_POSITIVE, _COUNT, _CAP = ValueRange(0, False, False), ValueRange(1, True, True), ValueRange(0, True, True)
VALUE_RANGES = {"lr": _POSITIVE, "epochs": _POSITIVE, "task_reduction_factor": _POSITIVE,
                "lang_reduction_factor": _POSITIVE, "warmup_ratio": ValueRange(0, True, False),
                "batch_size": _COUNT, "accumulation_steps": _COUNT, "evals_per_epoch": _COUNT, "max_steps": _COUNT,
                "max_train_examples": _CAP, "max_select_examples": _CAP, "max_eval_examples": _CAP, "max_texts": _CAP,
                "select_holdout": _CAP, "task_size_cap": _CAP}


@dataclass(frozen=True)
class StepRef:
    """A param whose value is the run id of another step (several ids are joined by commas)."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    entry: str
    params: dict  # str values, or StepRef
    label: str
    key: str = field(default="", compare=False)
    tags: dict = field(default_factory=dict, compare=False)  # provenance logged on the step's run (tuned values)

    def upstream(self) -> tuple[str, ...]:
        return tuple(key for value in self.params.values() if isinstance(value, StepRef) for key in value.keys)


@dataclass
class Grid:
    """The steps in dependency order (every step after its upstream steps), and the cells left out with why."""

    steps: list[Step]
    skipped: list[str]

    def levels(self) -> list[list[Step]]:
        """Steps grouped so that each group only needs steps of earlier groups: a group's steps may run at once."""
        depth: dict[str, int] = {}
        for step in self.steps:
            depth[step.key] = 1 + max((depth[key] for key in step.upstream()), default=-1)
        return [[step for step in self.steps if depth[step.key] == level] for level in range(max(depth.values()) + 1)]


def canonical(params: dict) -> str:
    """The params as one string that does not depend on their order or on YAML's spelling of numbers."""
    return json.dumps({key: value.keys if isinstance(value, StepRef) else str(value)
                       for key, value in sorted(params.items())}, sort_keys=True)


def step_key(entry: str, params: dict) -> str:
    return hashlib.sha256(f"{entry}\n{canonical(params)}".encode()).hexdigest()[:16]


def cache_key(entry: str, resolved_params: dict[str, str], code_version: str) -> str:
    """What makes a finished run reusable: its entry point, parameters (upstream run ids included) and code."""
    return hashlib.sha256(f"{entry}\n{canonical(resolved_params)}\n{code_version}".encode()).hexdigest()


def code_version(root: Path, patterns: tuple[str, ...] = ("components/*.py", "pipelines/*.py", "MLproject",
                                                           "requirements.txt")) -> str:
    """A hash of the code the steps run: any edit to it makes earlier runs stale."""
    digest = hashlib.sha256()
    for path in sorted(path for pattern in patterns for path in root.glob(pattern)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def read_config(path: Path, declared: dict[str, set[str]]) -> dict:
    """The study config, checked before anything trains: known keys, tasks and methods, phase params the MLproject
    declares, each arm's and target's data (the split its phase needs in the named language, a split to score for each
    evaluated language), numeric ranges, `max_length` against the model and the task, methods against the cell, and
    the tuned values a `tuned: true` target takes. Every refusal is one line: the file, the key path and the value.

    Args:
        declared: the MLproject's parameter names per entry point.
    """
    config = _load(path)
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise XstiltsInputError(f"{path}: unknown key(s) {', '.join(unknown)}; expected some of: "
                                f"{', '.join(sorted(CONFIG_KEYS))}")
    for required in ("targets", "methods", "seeds"):
        if not isinstance(config.get(required), list) or not config[required]:
            raise XstiltsInputError(f"{path}: `{required}:` must be a non-empty list")
    _check_methods(path, "methods", config["methods"])
    for index, seed in enumerate(config["seeds"]):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise XstiltsInputError(f"{path}: seeds[{index}]: {seed!r}: seeds must be integers")
    model = _model(config)
    with _naming(path, "model", model):
        check_model(model)
    for index, arm in enumerate(config.get("intermediate") or [NO_INTERMEDIATE]):
        if arm != NO_INTERMEDIATE:
            _check_arm(path, f"intermediate[{index}]", arm, declared, model)
    for index, target in enumerate(config["targets"]):
        _check_target(path, f"targets[{index}]", target, declared, model)
    lang_adapter = _mapping(path, "lang_adapter", config.get("lang_adapter") or {})
    _check_phase_params(path, "lang_adapter", "lang_adapter", lang_adapter, declared)
    if "protocol" in lang_adapter:
        raise XstiltsInputError(f"{path}: lang_adapter.protocol: {lang_adapter['protocol']!r}: set by the grid: the "
                                "protocols of the targets the language adapters serve (set `protocol:` on the targets)")
    _check_values(path, "lang_adapter", lang_adapter, [], model)
    _check_adapter_exclusions(path, config, lang_adapter)
    target_langs = {lang for target in config["targets"] for lang in get_task(target["task"]).langs}
    for index, lang in enumerate(config.get("lang_adapter_langs") or []):
        if lang not in target_langs:
            raise XstiltsInputError(f"{path}: lang_adapter_langs[{index}]: {lang!r}: unknown language: no target task "
                                    "has it")
    _check_resources(path, config.get("resources"), declared)
    with _naming(path):
        expand(config)  # the cells' tuned values, and at least one cell its methods can run
    return config


def _check_adapter_exclusions(path: Path, config: dict, lang_adapter: dict) -> None:
    """Every task that trains or is scored on language adapters (a target of a method with language adapters, an arm
    that such a method's adapter intermediate run trains) is among those whose evaluation texts the adapters' corpus
    leaves out: the adapter steps refuse one that may have trained on them, after the study's other steps ran."""
    where = "lang_adapter.exclude_eval_of"
    value = str(lang_adapter.get("exclude_eval_of", logged_defaults("lang_adapter")["exclude_eval_of"]))
    with _naming(path, where, value):
        excluded = set(studied_tasks(value))
    served = {}
    for index, target in enumerate(config["targets"]):
        methods = [METHODS[name] for name in target.get("methods", config["methods"])]
        if any(method.lang_adapters for method in methods):
            served.setdefault(target["task"], f"targets[{index}]")
        adapter_upstream = any(METHODS[name].lang_adapters for method in methods for name in method.upstream if name)
        for arm_index, arm in enumerate(config.get("intermediate") or []):
            if adapter_upstream and arm != NO_INTERMEDIATE:
                for task in _listed(str(arm["task"])):
                    served.setdefault(task, f"intermediate[{arm_index}]")
    for task, user in served.items():
        if task not in excluded:
            raise XstiltsInputError(f"{path}: {where}: {value!r}: leaves out no evaluation text of {task}, which "
                                    f"{user} trains or scores on language adapters: an adapter may then have trained "
                                    f"on what {task} scores, and its first adapter step would stop the study; name "
                                    f"{task} too (or use all)")


def _check_resources(path: Path, resources, declared: dict[str, set[str]]) -> None:
    """`resources:` names step entry points, each with a number >= 0 of GPUs (fractions share one) and CPUs."""
    if resources is None:
        return
    resources = _mapping(path, "resources", resources)
    for entry, request in resources.items():
        if entry not in declared:
            raise XstiltsInputError(f"{path}: resources.{entry}: unknown entry point; expected some of: "
                                    f"{', '.join(declared)}")
        request = _mapping(path, f"resources.{entry}", request)
        for kind, value in request.items():
            if kind not in RESOURCE_KINDS:
                raise XstiltsInputError(f"{path}: resources.{entry}.{kind}: unknown resource; expected "
                                        f"{' or '.join(RESOURCE_KINDS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise XstiltsInputError(f"{path}: resources.{entry}.{kind}: {value!r}: expected a number >= 0")


def _load(path: Path) -> dict:
    if not path.is_file():
        raise XstiltsInputError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise XstiltsInputError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(config, dict):
        raise XstiltsInputError(f"{path}: expected a mapping of study settings, got {type(config).__name__}")
    return config


def _check_methods(path: Path, setting: str, methods) -> None:
    if not isinstance(methods, list) or not methods:
        raise XstiltsInputError(f"{path}: {setting}: {methods!r}: must be a non-empty list of methods")
    for index, method in enumerate(methods):
        if method not in METHODS:
            raise XstiltsInputError(f"{path}: {setting}[{index}]: {method!r}: unknown method; expected some of: "
                                    f"{', '.join(METHODS)}")


def _target_params(target: dict) -> dict:
    """A target entry's `target` phase params: without its `evaluate` params, its own `methods` list and `tuned`."""
    return {key: value for key, value in target.items() if key not in ("evaluate", "methods", "tuned")}


@contextmanager
def _naming(path: Path, where: str = "", value=None):
    """A refusal from a registry or the data layer as one error line naming the config file, the key path and the
    value."""
    try:
        yield
    except XstiltsInputError as error:
        located = f"{where}: {value!r}: " if where else ""
        raise XstiltsInputError(f"{path}: {located}{error}") from None


def _tasks(path: Path, where: str, entry: dict) -> list[TaskSpec]:
    """The registered task(s) an arm or target names (an arm may list several, comma-separated)."""
    if "task" not in entry:
        raise XstiltsInputError(f"{path}: {where}.task: missing: every entry names its task (`task: xnli`)")
    specs = []
    for name in _listed(str(entry["task"])):
        with _naming(path, f"{where}.task", entry["task"]):
            spec = get_task(name)
            check_obtainable(spec)
        specs.append(spec)
    if not specs:
        raise XstiltsInputError(f"{path}: {where}.task: {entry['task']!r}: names no task")
    return specs


def _check_arm(path: Path, where: str, arm, declared: dict[str, set[str]], model: str) -> None:
    """An intermediate arm: its tasks train in its source language."""
    arm = _mapping(path, "intermediate", arm)
    _check_phase_params(path, where, "intermediate", arm, declared)
    specs = _tasks(path, where, arm)
    source_lang = str(arm.get("source_lang", SOURCE_LANG))
    for spec in specs:
        with _naming(path, f"{where}.source_lang", source_lang):
            spec.check_lang(source_lang, training=True)
        gap = source_training_gap(spec, source_lang)
        if gap:
            raise XstiltsInputError(f"{path}: {where}.task: {arm['task']!r}: cannot be an intermediate task in "
                                    f"{source_lang}: {gap}")
    _check_values(path, where, arm, specs, model)


def _check_target(path: Path, where: str, target, declared: dict[str, set[str]], model: str) -> None:
    """A target: its English training data, a split to score in each evaluated language, its own methods."""
    target = _mapping(path, "targets", target)
    specs = _tasks(path, where, target)
    if len(specs) > 1:
        raise XstiltsInputError(f"{path}: {where}.task: {target['task']!r}: a target is one task (task lists are for "
                                "intermediate arms)")
    spec = specs[0]
    if "methods" in target:
        _check_methods(path, f"{where}.methods", target["methods"])
        for index, name in enumerate(target["methods"]):
            refusal = unsupported_reason(METHODS[name], spec)
            if refusal:
                raise XstiltsInputError(f"{path}: {where}.methods[{index}]: {name!r}: {refusal}")
    if not isinstance(target.get("tuned", False), (bool, str)):
        raise XstiltsInputError(f"{path}: {where}.tuned: {target['tuned']!r}: expected true, false or the "
                                "intermediate label of the tuned cell to read for every arm (e.g. none, anli-en)")
    params = _target_params(target)
    _check_phase_params(path, where, "target", params, declared)
    evaluate = _mapping(path, f"{where}.evaluate", target.get("evaluate") or {})
    _check_phase_params(path, f"{where}.evaluate", "evaluate", evaluate, declared)
    protocol = str(target.get("protocol", DEFAULT_PROTOCOL))
    langs = evaluate.get("langs", "")
    for lang in _listed(str(langs)) or spec.langs:
        with _naming(path, f"{where}.evaluate.langs", langs):
            if spec.task_type is TaskType.RETRIEVAL:
                spec.check_lang(lang)
                check_files(spec.name, [lang])
            else:
                choose_evaluation_split(spec, protocol, lang)
    if spec.task_type is TaskType.RETRIEVAL and "max_eval_examples" in evaluate:
        raise XstiltsInputError(f"{path}: {where}.evaluate.max_eval_examples: {evaluate['max_eval_examples']!r}: "
                                f"{spec.name} is scored on sentence pairs: cap them with max_pairs")
    layer = str(evaluate.get("retrieval_layer", "")).strip()
    if spec.task_type is TaskType.RETRIEVAL and layer:
        states = hidden_state_count(model)
        if not layer.lstrip("-").isdigit() or not -states <= int(layer) < states:
            raise XstiltsInputError(f"{path}: {where}.evaluate.retrieval_layer: {evaluate['retrieval_layer']!r}: "
                                    f"expected an index into the {states} hidden states of {model} (0 = embeddings, "
                                    f"{states - 1} or -1 = last layer)")
    if spec.task_type is not TaskType.RETRIEVAL:
        with _naming(path, f"{where}.task", spec.name):
            gap = english_training_gap(spec, protocol, str(target.get("train_source_override", "")),
                                       int(target.get("select_holdout", 0)))
            if gap:
                raise XstiltsInputError(f"cannot train it: {gap}")
    _check_values(path, where, params, [spec], model)
    _check_values(path, f"{where}.evaluate", evaluate, [spec], model)


def _check_values(path: Path, where: str, params: dict, specs: list[TaskSpec], model: str) -> None:
    """Numeric params within their ranges, and `max_length` between what the tasks need and what the model takes
    (`components.model_registry.check_max_length`, the check the phases run)."""
    for name, value_range in VALUE_RANGES.items():
        if name in params and not value_range.admits(params[name]):
            raise XstiltsInputError(f"{path}: {where}.{name}: {params[name]!r}: expected {value_range.expected}")
    if "max_length" in params:
        value = params["max_length"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise XstiltsInputError(f"{path}: {where}.max_length: {value!r}: expected an integer")
        try:
            check_max_length(value, model, specs)
        except XstiltsInputError as error:
            raise XstiltsInputError(f"{path}: {where}.{error}") from None


def _model(config: dict) -> str:
    return str(config.get("model", DEFAULT_MODEL))


def _listed(text: str) -> list[str]:
    """The items of a comma-separated parameter value."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _mapping(path: Path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise XstiltsInputError(f"{path}: each entry of `{where}:` must be a mapping of parameters, got {value!r}")
    return value


def _check_phase_params(path: Path, where: str, entry: str, params: dict, declared: dict[str, set[str]]) -> None:
    unknown = sorted(set(params) - declared[entry])
    if unknown:
        raise XstiltsInputError(f"{path}: {where}: unknown parameter(s) {', '.join(unknown)} for {entry}; expected "
                                f"some of: {', '.join(sorted(declared[entry]))}")


class _Builder:
    """Adds steps once: a step asked for again (same entry and params) is the same step."""

    def __init__(self):
        self.steps: dict[str, Step] = {}

    def add(self, entry: str, params: dict, label: str, tags: dict | None = None) -> StepRef:
        key = step_key(entry, params)
        if key not in self.steps:
            self.steps[key] = Step(entry, params, label, key, tags or {})
        return StepRef((key,))


def expand(config: dict) -> Grid:
    """Every cell's steps, shared steps once, in dependency order; cells a method cannot run are listed as skipped."""
    builder, skipped = _Builder(), []
    model = _model(config)
    arms = config.get("intermediate") or [NO_INTERMEDIATE]
    for seed in config["seeds"]:
        for arm in arms:
            for index, target in enumerate(config["targets"]):
                for method_name in target.get("methods", config["methods"]):
                    reason = _cell_problem(METHODS[method_name], arm, target)
                    if reason:
                        skipped.append(f"{_arm_label(arm)} -> {target['task']} x {method_name}: {reason}")
                        continue
                    tuned = _tuned(config, f"targets[{index}]", model, arm, target, method_name)
                    _add_cell(builder, config, model, seed, arm, target, METHODS[method_name], tuned)
    skipped = list(dict.fromkeys(skipped))  # the same reason for every seed
    if not builder.steps:
        raise XstiltsInputError("the study has no cell that its methods can run: " + "; ".join(skipped))
    return Grid(list(builder.steps.values()), skipped)


def _arm_label(arm) -> str:
    return NO_INTERMEDIATE if arm == NO_INTERMEDIATE else f"{arm['task']}[{arm.get('source_lang', SOURCE_LANG)}]"


def _is_retrieval(target: dict) -> bool:
    return get_task(target["task"]).task_type is TaskType.RETRIEVAL


def _cell_problem(method: Method, arm, target: dict) -> str:
    if _is_retrieval(target):
        return "" if method.name == "full" else "retrieval tasks are scored from the encoder, without a method"
    unsupported = unsupported_reason(method, get_task(target["task"]))
    if unsupported:
        return unsupported
    if arm == NO_INTERMEDIATE and NO_UPSTREAM not in method.upstream:
        return f"{method.name} starts from an intermediate run"
    if arm != NO_INTERMEDIATE and not [name for name in method.upstream if name]:
        return f"{method.name} starts from the base model (use adapter_stilts or full_then_madx after an intermediate)"
    return ""


def _tuned(config: dict, where: str, model: str, arm, target: dict, method: str) -> TunedCell | None:
    """The cell's tuned values where its target says `tuned: true` (or those of the cell tuned after the intermediate
    label `tuned` names, for every arm); raises naming the missing file and the `tune` command that writes it."""
    if target.get("tuned") in (None, False):
        return None
    if isinstance(target["tuned"], str):
        intermediate = target["tuned"]
    else:
        intermediate = (intermediate_label() if arm == NO_INTERMEDIATE
                        else intermediate_label(str(arm["task"]), str(arm.get("source_lang", SOURCE_LANG))))
    directory = PROJECT_ROOT / config.get("best_params_dir", DEFAULT_DIR)
    found = tuned_cell(target["task"], method, model, intermediate, directory)
    if found:
        return found
    cell = cell_key(target["task"], method, model, intermediate)
    options = {"method": method, "model": model, **_target_params(target),
               **({"best_params_dir": config["best_params_dir"]} if "best_params_dir" in config else {})}
    command = "mlflow run . -e tune" + "".join(f" -P {name}={value}" for name, value in options.items())
    if intermediate != intermediate_label():
        command += f" -P init_run_id=<run id of an intermediate {intermediate} run>"
    if METHODS[method].lang_adapters:
        command += " -P lang_adapter_run_id=<run id of an English lang_adapter run>"
    raise XstiltsInputError(f"{where}.tuned: {target['tuned']!r}: no tuned values for cell {cell}: {directory / (cell + '.yaml')} "
                            f"does not exist; write it with: {command}")


def _add_cell(builder: _Builder, config: dict, model: str, seed: int, arm, target: dict, method: Method,
              tuned: TunedCell | None) -> None:
    arm_label = _arm_label(arm)
    intermediate = None
    if arm != NO_INTERMEDIATE:
        upstream_method = next(name for name in method.upstream if name)
        params = {"model": model, "seed": seed, **arm, "method": upstream_method}
        if upstream_method != "full":  # an intermediate-task adapter stacks on its source language's adapter
            params["lang_adapter_run_id"] = _lang_adapter(builder, config, model, arm.get("source_lang", SOURCE_LANG),
                                                          None)
        intermediate = builder.add("intermediate", params, f"intermediate {arm_label} {upstream_method} seed {seed}")
    evaluate_params = dict(target.get("evaluate") or {})
    target_params = _target_params(target)
    if _is_retrieval(target):
        encoder = {"encoder_run_id": intermediate} if intermediate else {"encoder_model": model}
        builder.add("evaluate", {"retrieval_task": target["task"], **encoder, **evaluate_params},
                    f"evaluate {target['task']} from {arm_label} seed {seed}")
        return
    # Tuned values replace the defaults; values the target sets itself replace tuned ones.
    tuned_params = {name: value for name, value in (tuned.params if tuned else {}).items() if name not in target_params}
    params = {"model": model, "seed": seed, **tuned_params, **target_params, "method": method.name}
    tags = {**{f"tuned/{name}": str(value) for name, value in tuned_params.items()},
            **({"tuned_from_run": tuned.study_run_id, "tuned_file": str(tuned.path)} if tuned else {})}
    if intermediate:
        params["init_run_id"] = intermediate
    # Language adapters belong to the encoder they were trained on: the intermediate run's for full_then_madx.
    adapter_encoder = intermediate if method.encoder_from_upstream else None
    if method.lang_adapters:
        params["lang_adapter_run_id"] = _lang_adapter(builder, config, model, SOURCE_LANG, adapter_encoder)
    trained = builder.add("target", params, f"target {target['task']} {method.name} from {arm_label} seed {seed}",
                          tags)
    evaluate_params["train_run_id"] = trained
    if method.lang_adapters:
        langs = [lang for lang in _adapter_langs(config, target) if lang != SOURCE_LANG]
        evaluate_params["lang_adapter_runs"] = StepRef(tuple(
            key for lang in langs for key in _lang_adapter(builder, config, model, lang, adapter_encoder).keys))
        evaluate_params.setdefault("lang_adapter_fallback", config.get("lang_adapter_fallback", ""))
    builder.add("evaluate", evaluate_params, f"evaluate {target['task']} {method.name} from {arm_label} seed {seed}")


def _adapter_langs(config: dict, target: dict) -> list[str]:
    """The languages that get their own adapter: `lang_adapter_langs` if set (others use the fallback), else every
    evaluated language."""
    if config.get("lang_adapter_langs"):
        return list(config["lang_adapter_langs"])
    return _listed(str((target.get("evaluate") or {}).get("langs", ""))) or list(get_task(target["task"]).langs)


def _served_protocols(config: dict) -> str:
    """The protocols of the targets that a method with language adapters trains, sorted and comma-separated: every
    language adapter serves them all (one adapter per language and encoder), so its corpus leaves out what each of
    them evaluates."""
    arms = config.get("intermediate") or [NO_INTERMEDIATE]
    served = {str(target.get("protocol", DEFAULT_PROTOCOL)) for target in config["targets"]
              for name in target.get("methods", config["methods"]) for arm in arms
              if METHODS[name].lang_adapters and not _cell_problem(METHODS[name], arm, target)}
    return ",".join(sorted(served))


def _lang_adapter(builder: _Builder, config: dict, model: str, lang: str, encoder: StepRef | None) -> StepRef:
    params = {"model": model, **(config.get("lang_adapter") or {}), "lang": lang,
              "protocol": _served_protocols(config)}
    if encoder:
        params["init_run_id"] = encoder
    return builder.add("lang_adapter", params, f"lang_adapter {lang}" + (" (intermediate encoder)" if encoder else ""))


# What `shrunk` sets: one optimizer step per training phase, and inputs the smallest models take.
SHRUNK_LENGTH = 64
GPU_ONLY_PARAMS = ("precision",)  # bf16 autocast is for GPUs; the shrunk run is a CPU check


def _retrieval_files_exist(task: str, lang: str) -> bool:
    return all(path.is_file() for path in task_paths(task, RETRIEVAL_TASKS[task].scored_split, lang))


def shrunk(config: dict, model: str, langs: tuple[str, ...], examples: int) -> dict:
    """A copy of a study config that runs in seconds: CI's check that a shipped config runs end to end. `model` for
    every phase, the first seed, one epoch of one batch of `examples` items per training phase, `examples` items
    scored in each of `langs` that a target has (a target with none of them keeps its first), language adapters of
    one step on `examples` texts (of the config's `text_source`: a Hub one needs the Hub or a prepared cache of it)
    for those of its `lang_adapter_langs` in `langs`;
    a retrieval target scores `examples` pairs per language (its cap is `max_pairs`: `max_eval_examples` caps trained
    targets only) in those of its languages whose files are there, at the evaluate default layer (a `retrieval_layer`
    names a layer of the study's model). Arms, targets and methods stay as they are."""
    caps = {"epochs": 1, "batch_size": examples, "accumulation_steps": 1, "max_train_examples": examples,
            "max_select_examples": examples, "max_length": SHRUNK_LENGTH}

    def trained(params: dict) -> dict:
        kept = {name: value for name, value in params.items() if name not in GPU_ONLY_PARAMS}
        if "select_holdout" in kept:  # the last training item selects: a Hub fixture's few items hold no more
            kept["select_holdout"] = 1
        return {**kept, **caps}

    small = {**config, "model": model, "seeds": config["seeds"][:1]}
    small["intermediate"] = [arm if arm == NO_INTERMEDIATE else trained(arm) for arm in
                             config.get("intermediate") or [NO_INTERMEDIATE]]
    small["targets"] = []
    for target in config["targets"]:
        spec = get_task(target["task"])
        evaluate = dict(target.get("evaluate") or {})
        listed = _listed(str(evaluate.get("langs", ""))) or list(spec.langs)
        retrieval = spec.task_type is TaskType.RETRIEVAL
        if retrieval:
            evaluate.pop("retrieval_layer", None)
            listed = [lang for lang in listed if _retrieval_files_exist(spec.name, lang)] or listed
        evaluate.update({"langs": ",".join([lang for lang in listed if lang in langs] or listed[:1]),
                         "max_pairs" if retrieval else "max_eval_examples": examples})
        params = target if retrieval else trained(target)
        small["targets"].append({**params, "evaluate": evaluate})
    small["lang_adapter"] = {**{name: value for name, value in (config.get("lang_adapter") or {}).items()
                                if name not in GPU_ONLY_PARAMS},
                             "max_steps": 1, "max_texts": examples, "batch_size": examples,
                             "max_length": SHRUNK_LENGTH}
    if config.get("lang_adapter_langs"):
        small["lang_adapter_langs"] = [lang for lang in config["lang_adapter_langs"] if lang in langs]
    return small

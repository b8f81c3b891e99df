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

from components.data import english_training_gap
from components.errors import XstiltsInputError
from components.methods import METHODS, NO_UPSTREAM, Method, unsupported_reason
from components.models import check_model
from components.tasks import TaskType, get_task

DEFAULT_MODEL = "multilingual-e5-small"
NO_INTERMEDIATE = "none"
DEFAULT_PROTOCOL = "auto"
SOURCE_LANG = "en"  # target tasks train on English: the zero-shot setting
CONFIG_KEYS = {"study", "model", "seeds", "methods", "intermediate", "targets", "lang_adapter", "lang_adapter_langs",
               "lang_adapter_fallback"}


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
    """The study config, checked: known keys, known tasks and methods, and phase params the MLproject declares.

    Args:
        declared: the MLproject's parameter names per entry point.
    """
    if not path.is_file():
        raise XstiltsInputError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise XstiltsInputError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(config, dict):
        raise XstiltsInputError(f"{path}: expected a mapping of study settings, got {type(config).__name__}")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise XstiltsInputError(f"{path}: unknown key(s) {', '.join(unknown)}; expected some of: "
                                f"{', '.join(sorted(CONFIG_KEYS))}")
    for required in ("targets", "methods", "seeds"):
        if not isinstance(config.get(required), list) or not config[required]:
            raise XstiltsInputError(f"{path}: `{required}:` must be a non-empty list")
    _check_methods(path, "methods", config["methods"])
    for seed in config["seeds"]:
        if not isinstance(seed, int):
            raise XstiltsInputError(f"{path}: seeds must be integers, got {seed!r}")
    for arm in config.get("intermediate") or [NO_INTERMEDIATE]:
        if arm != NO_INTERMEDIATE:
            _check_phase_params(path, "intermediate", _mapping(path, "intermediate", arm), declared)
    for target in config["targets"]:
        target = _mapping(path, "targets", target)
        if "methods" in target:
            _check_methods(path, f"target {target.get('task')} methods", target["methods"])
        _check_phase_params(path, "target", _target_params(target), declared)
        _check_phase_params(path, "evaluate", _mapping(path, "evaluate", target.get("evaluate") or {}), declared)
    lang_adapter = _mapping(path, "lang_adapter", config.get("lang_adapter") or {})
    _check_phase_params(path, "lang_adapter", lang_adapter, declared)
    if "protocol" in lang_adapter:
        raise XstiltsInputError(f"{path}: lang_adapter: protocol is set by the grid: the protocols of the targets "
                                "the language adapters serve (set `protocol:` on the targets)")
    _check_registry_values(path, config)
    return config


def _check_methods(path: Path, setting: str, methods) -> None:
    if not isinstance(methods, list) or not methods:
        raise XstiltsInputError(f"{path}: `{setting}:` must be a non-empty list of methods")
    for method in methods:
        if method not in METHODS:
            raise XstiltsInputError(f"{path}: {setting}: unknown method {method!r}; expected some of: "
                                    f"{', '.join(METHODS)}")


def _target_params(target: dict) -> dict:
    """A target entry's `target` phase params: without its `evaluate` params and its own `methods` list."""
    return {key: value for key, value in target.items() if key not in ("evaluate", "methods")}


@contextmanager
def _naming(path: Path, setting: str):
    """A registry's refusal (unknown model, language, ...) as one error naming the config file and the setting."""
    try:
        yield
    except XstiltsInputError as error:
        raise XstiltsInputError(f"{path}: {setting}: {error}") from None


def _check_registry_values(path: Path, config: dict) -> None:
    """The model, languages and target tasks' English training data that the registries know of."""
    with _naming(path, "model"):
        check_model(_model(config))
    for arm in config.get("intermediate") or [NO_INTERMEDIATE]:
        if arm != NO_INTERMEDIATE:
            with _naming(path, f"intermediate {arm['task']} source_lang"):
                for task in _listed(str(arm["task"])):
                    get_task(task).check_lang(arm.get("source_lang", SOURCE_LANG), training=True)
    for target in config["targets"]:
        spec = get_task(target["task"])
        with _naming(path, f"target {spec.name} evaluate langs"):
            for lang in _listed(str((target.get("evaluate") or {}).get("langs", ""))):
                spec.check_lang(lang)
        if not _is_retrieval(target):
            with _naming(path, f"target {spec.name}"):
                gap = english_training_gap(spec, str(target.get("protocol", "auto")),
                                           str(target.get("train_source_override", "")),
                                           int(target.get("select_holdout", 0)))
                if gap:
                    raise XstiltsInputError(f"cannot train it: {gap}")
    target_langs = {lang for target in config["targets"] for lang in get_task(target["task"]).langs}
    for lang in config.get("lang_adapter_langs") or []:
        if lang not in target_langs:
            raise XstiltsInputError(f"{path}: lang_adapter_langs: unknown language {lang!r}: no target task has it")


def _model(config: dict) -> str:
    return str(config.get("model", DEFAULT_MODEL))


def _listed(text: str) -> list[str]:
    """The items of a comma-separated parameter value."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _mapping(path: Path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise XstiltsInputError(f"{path}: each entry of `{where}:` must be a mapping of parameters, got {value!r}")
    return value


def _check_phase_params(path: Path, entry: str, params: dict, declared: dict[str, set[str]]) -> None:
    unknown = sorted(set(params) - declared[entry])
    if unknown:
        raise XstiltsInputError(f"{path}: unknown parameter(s) {', '.join(unknown)} for {entry}; expected some of: "
                                f"{', '.join(sorted(declared[entry]))}")
    with _naming(path, entry):
        for task in _listed(str(params.get("task", ""))):
            get_task(task)


class _Builder:
    """Adds steps once: a step asked for again (same entry and params) is the same step."""

    def __init__(self):
        self.steps: dict[str, Step] = {}

    def add(self, entry: str, params: dict, label: str) -> StepRef:
        key = step_key(entry, params)
        if key not in self.steps:
            self.steps[key] = Step(entry, params, label, key)
        return StepRef((key,))


def expand(config: dict) -> Grid:
    """Every cell's steps, shared steps once, in dependency order; cells a method cannot run are listed as skipped."""
    builder, skipped = _Builder(), []
    model = _model(config)
    arms = config.get("intermediate") or [NO_INTERMEDIATE]
    for seed in config["seeds"]:
        for arm in arms:
            for target in config["targets"]:
                for method_name in target.get("methods", config["methods"]):
                    reason = _cell_problem(METHODS[method_name], arm, target)
                    if reason:
                        skipped.append(f"{_arm_label(arm)} -> {target['task']} x {method_name}: {reason}")
                        continue
                    _add_cell(builder, config, model, seed, arm, target, METHODS[method_name])
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


def _add_cell(builder: _Builder, config: dict, model: str, seed: int, arm, target: dict, method: Method) -> None:
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
    params = {"model": model, "seed": seed, **target_params, "method": method.name}
    if intermediate:
        params["init_run_id"] = intermediate
    # Language adapters belong to the encoder they were trained on: the intermediate run's for full_then_madx.
    adapter_encoder = intermediate if method.encoder_from_upstream else None
    if method.lang_adapters:
        params["lang_adapter_run_id"] = _lang_adapter(builder, config, model, SOURCE_LANG, adapter_encoder)
    trained = builder.add("target", params, f"target {target['task']} {method.name} from {arm_label} seed {seed}")
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

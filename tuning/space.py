"""Search spaces: which `target` options a study samples, over which ranges or choices.

A space is a YAML mapping from option names to a range or a list of choices:

    lr: {low: 1.0e-5, high: 1.0e-3, log: true}
    task_reduction_factor: {choices: [4, 8, 16, 32]}
    epochs: {low: 1, high: 3, step: 1}

Names are the option names of the `target` entry point (`lr`, `epochs`, `warmup_ratio`, `task_reduction_factor`,
`lang_adapter_run_id`, ...), so any option `target` gains becomes tunable, and the values a study finds are `target`
(and MLproject) parameter values. Numeric options take ranges (an int option samples integers); any option takes
choices, which its own type checks (`precision: {choices: [fp32, bf16]}`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import click
import optuna
import yaml

from components.errors import XstiltsInputError

RANGE_KEYS = {"low", "high", "log", "step"}
NUMERIC_TYPES = (click.FLOAT, click.INT)


@dataclass(frozen=True)
class Dimension:
    """One sampled option: a range (`low`..`high`, on a log scale if `log`, in steps of `step`) or `choices`."""

    name: str
    kind: click.ParamType
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial):
        """The trial's value, converted to the option's type."""
        if self.choices:
            return self.kind.convert(trial.suggest_categorical(self.name, list(self.choices)), None, None)
        if self.kind is click.INT:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.choices:
            return "choices " + ", ".join(str(choice) for choice in self.choices)
        scale = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"{self.low}..{self.high}{scale}"


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    def suggest(self, trial: optuna.Trial) -> dict:
        return {dimension.name: dimension.suggest(trial) for dimension in self.dimensions}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dimension.name for dimension in self.dimensions)

    def fingerprint(self) -> str:
        """What workers joining one study must agree on."""
        return json.dumps({dimension.name: dimension.describe() for dimension in self.dimensions}, sort_keys=True)


def read_space(text_or_path: str, tunable: dict[str, click.ParamType], fixed_per_study: tuple[str, ...] = ()
               ) -> SearchSpace:
    """The space in a YAML file, or in YAML text such as `{lr: {low: 1.0e-5, high: 1.0e-3, log: true}}`.

    Args:
        tunable: the option names a space may name, with their types.
        fixed_per_study: options that exist but a study may not sample (named in the error).

    Raises:
        XstiltsInputError: not a file or a YAML mapping, an unknown or fixed option, an empty or inverted range, a
            bad scale or step, empty choices or a choice the option refuses.
    """
    path = Path(text_or_path)
    source = path.read_text(encoding="utf-8") if path.is_file() else text_or_path
    where = str(path) if path.is_file() else "space"
    try:
        mapping = yaml.safe_load(source)
    except yaml.YAMLError as error:
        raise XstiltsInputError(f"{where}: not valid YAML ({error})") from None
    if not isinstance(mapping, dict) or not mapping:
        raise XstiltsInputError(f"{where}: expected a file or a non-empty YAML mapping of option names to ranges or "
                                f"choices, e.g. {{lr: {{low: 1.0e-5, high: 1.0e-3, log: true}}}}; got {text_or_path!r}")
    return SearchSpace(tuple(_dimension(where, str(name), spec, tunable, fixed_per_study)
                             for name, spec in mapping.items()))


def _dimension(where: str, name: str, spec, tunable: dict[str, click.ParamType],
               fixed_per_study: tuple[str, ...]) -> Dimension:
    if name not in tunable:
        why = (f"{name} is fixed for a whole study (it defines the study's cell, data or replicate)"
               if name in fixed_per_study else f"unknown parameter {name!r}")
        raise XstiltsInputError(f"{where}: {why}; a space may sample: {', '.join(sorted(tunable))}")
    kind = tunable[name]
    if not isinstance(spec, dict):
        raise XstiltsInputError(f"{where}: {name}: expected {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r}")
    if "choices" in spec:
        return _choices(where, name, kind, spec)
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(spec):
        raise XstiltsInputError(f"{where}: {name}: a range needs low and high (and optionally log or step), or a "
                                f"dimension lists choices; got keys {', '.join(sorted(spec))}")
    if kind not in NUMERIC_TYPES:
        raise XstiltsInputError(f"{where}: {name} is not numeric; give it choices instead of a range")
    low, high, step = (_number(where, name, key, spec.get(key), kind) for key in ("low", "high", "step"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise XstiltsInputError(f"{where}: {name}: log must be true or false, got {log!r}")
    if low == high:
        raise XstiltsInputError(f"{where}: {name}: the range {low}..{high} is empty; to fix {name}, pass it as an "
                                "option instead of sampling it")
    if low > high:
        raise XstiltsInputError(f"{where}: {name}: the range {low}..{high} is inverted; low must be below high")
    if log and (low <= 0 or step is not None):
        raise XstiltsInputError(f"{where}: {name}: a log scale needs a positive low and no step")
    if step is not None and step <= 0:
        raise XstiltsInputError(f"{where}: {name}: step must be positive, got {step}")
    return Dimension(name, kind, low, high, log, step)


def _choices(where: str, name: str, kind: click.ParamType, spec: dict) -> Dimension:
    choices = spec["choices"]
    if set(spec) != {"choices"}:
        raise XstiltsInputError(f"{where}: {name}: choices exclude a range; got keys {', '.join(sorted(spec))}")
    if not isinstance(choices, list) or not choices:
        raise XstiltsInputError(f"{where}: {name}: choices must be a non-empty list, got {choices!r}")
    for choice in choices:
        try:
            kind.convert(choice, None, None)
        except click.BadParameter as error:
            raise XstiltsInputError(f"{where}: {name}: choice {choice!r} is refused: {error.message}") from None
    return Dimension(name, kind, choices=tuple(choices))


def _number(where: str, name: str, key: str, value, kind: click.ParamType) -> float | int | None:
    """A bound or step; PyYAML reads `1e-5` (no dot) as a string, so numeric strings are accepted."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise XstiltsInputError(f"{where}: {name}: {key} must be a number, got {value!r}") from None
    if kind is click.INT:
        if not number.is_integer():
            raise XstiltsInputError(f"{where}: {name} is an integer option; {key} {value!r} is not an integer")
        return int(number)
    return number

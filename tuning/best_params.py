"""The tuned values of a cell (target task, method, model, intermediate init), as the YAML file the grid reads.

One file per cell, `<best params dir>/<task>.<method>.<model>.<intermediate>.yaml`, rewritten by every worker that
leaves a study: `params` holds the best complete trial's values under `target`'s parameter names, next to the values
the study's options gave them (`defaults`), the objective, the trial counts and the runs to look them up.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.settings import PROJECT_ROOT
from components.tasks import NO_INTERMEDIATE

DEFAULT_DIR = PROJECT_ROOT / "tuning" / "best_params"


def model_label(model: str) -> str:
    """A registered model's name, or a local folder's last component."""
    return Path(model).name if "/" in model else model


def intermediate_label(intermediate_task: str = "", source_lang: str = "") -> str:
    """`none`, or the intermediate run's task(s) and source language, e.g. `anli-en`, `siqa+sst2-en`."""
    return f"{intermediate_task.replace(',', '+')}-{source_lang}" if intermediate_task else NO_INTERMEDIATE


def cell_key(task: str, method: str, model: str, intermediate: str) -> str:
    """The cell's file stem and default study name, e.g. `xnli.full.multilingual-e5-small.none`."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{task}.{method}.{model_label(model)}.{intermediate}")


def best_params_path(directory: Path, cell: dict[str, str]) -> Path:
    return directory / f"{cell_key(**cell)}.yaml"


def write_best_params(path: Path, content: dict) -> None:
    """Writes atomically: workers of one study may finish together, and the grid may read at any time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    os.replace(partial, path)


@dataclass(frozen=True)
class TunedCell:
    """A cell's tuned `target` parameter values, the file they were read from and the study run that found them."""

    params: dict
    study_run_id: str
    path: Path


def tuned_cell(task: str, method: str, model: str, intermediate: str, directory: Path = DEFAULT_DIR) -> TunedCell | None:
    """For the grid: a cell's tuned values, or None without a file for it."""
    path = best_params_path(directory, {"task": task, "method": method, "model": model, "intermediate": intermediate})
    if not path.is_file():
        return None
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    return TunedCell(content["params"], str(content.get("study_run_id", "")), path)


def tuned_values(task: str, method: str, model: str, intermediate: str,
                 directory: Path = DEFAULT_DIR) -> tuple[dict, Path] | None:
    """A cell's tuned `target` parameter values and the file they came from, or None without one."""
    cell = tuned_cell(task, method, model, intermediate, directory)
    return (cell.params, cell.path) if cell else None

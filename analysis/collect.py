"""Runs from the tracking server -> one tidy table: a row per (run, language, metric) value.

Reads `evaluate` runs (tag `xlt.phase = evaluate`) through one server-side MLflow `filter_string`, narrowed by
experiment (name or id), parent run (`mlflow.parentRunId`, the `main` run of a study) and `key=value` tags. Only
FINISHED runs enter the table; the others are counted by status. Values that cannot be trusted are left out and
listed with the reason: a run without the params the analysis groups by, a metric key not of the form
`eval/<task>/<lang>/<metric>`, a task, language or metric the registry does not know for the run's task, a value off
the 0-100 scale, and a value superseded by a later run of the same configuration, seed and language.

Each value carries the split it was scored on (`eval_split`: test or dev), from the run's `eval_split/<task>/<lang>`
param (runs that predate the param say `unrecorded`), and why it is optimistic (`optimistic`), from the run's
`optimistic/<task>/<lang>` param (e.g. BUCC's in-sample threshold, an English score on the selection set); "" where
the run logged none.
"""

import re
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components import tracking
from components.errors import XstiltsInputError
from components.tasks import NO_INTERMEDIATE, TASKS

EVALUATE_PHASE = "evaluate"
CONFIG = ("method", "model", "intermediate_task", "intermediate_source_lang")
TIDY_COLUMNS = ("run_id", "parent_run_id", "experiment_id", *CONFIG, "target_task", "seed", "lang", "eval_split",
                "optimistic", "metric", "value")
UNRECORDED_SPLIT = "unrecorded"
REQUIRED_PARAMS = ("task", "model", "method", "seed", "intermediate_task")
PROBLEM_COLUMNS = ("run_id", "item", "reason")
_METRIC_KEY = r"^eval/([^/]+)/([^/]+)/([^/]+)$"
_PARAM_COLUMNS = [f"params.{param}" for param in REQUIRED_PARAMS]
_SAFE_KEY = re.compile(r"[\w.\-/ ]+")
_VALID_TASK_LANGS = {f"{name}/{lang}" for name, spec in TASKS.items() for lang in spec.langs}
_VALID_TASK_METRICS = {f"{name}/{metric}" for name, spec in TASKS.items() for metric in spec.metrics}


@dataclass(frozen=True)
class RunSelection:
    """Which `evaluate` runs to analyse; empty fields do not filter.

    Attributes:
        experiment: an experiment name or id.
        parent_run_id: the run whose children are analysed (a study's `main` run).
        tags: (key, value) pairs every run must carry.
    """

    experiment: str = ""
    parent_run_id: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def filter_string(self) -> str:
        clauses = [(f"{tracking.TAG_PREFIX}phase", EVALUATE_PHASE)]
        if self.parent_run_id:
            clauses.append(("mlflow.parentRunId", self.parent_run_id))
        return " and ".join(f"tags.`{key}` = '{value}'" for key, value in [*clauses, *self.tags])

    def describe(self) -> str:
        parts = [f"experiment {self.experiment!r}" if self.experiment else "all experiments"]
        if self.parent_run_id:
            parts.append(f"parent run {self.parent_run_id}")
        parts += [f"tag {key}={value}" for key, value in self.tags]
        return ", ".join(parts)


def parse_tags(text: str) -> tuple[tuple[str, str], ...]:
    """`key=value,key=value` -> pairs; keys and values are checked so that they cannot break the filter string.

    Raises:
        XstiltsInputError: an item without `=`, or a key or value with characters MLflow tag filters cannot hold.
    """
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, separator, value = item.partition("=")
        if not separator or not _SAFE_KEY.fullmatch(key.strip()) or "'" in value:
            raise XstiltsInputError(f"tag filter {item!r}: expected key=value, the key made of letters, digits and "
                                    f"`_ - . / space`, the value without a single quote")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def check_run_id(run_id: str) -> str:
    if run_id and not re.fullmatch(r"[0-9A-Za-z_-]+", run_id):
        raise XstiltsInputError(f"parent run id {run_id!r}: expected an MLflow run id (letters and digits)")
    return run_id


@dataclass(frozen=True)
class Collected:
    """The tidy table and everything that was left out of it.

    Attributes:
        tidy: one row per value, columns `TIDY_COLUMNS`.
        status_counts: the matching runs by status (FINISHED included).
        problems: what was left out and why (`PROBLEM_COLUMNS`).
        source: the tracking URI, the selection and the filter string, in words.
    """

    tidy: pd.DataFrame
    status_counts: dict[str, int]
    problems: pd.DataFrame
    source: str

    @property
    def ignored_runs(self) -> dict[str, int]:
        return {status: count for status, count in sorted(self.status_counts.items()) if status != "FINISHED"}


def collect(selection: RunSelection) -> Collected:
    """Searches the tracking server (`MLFLOW_TRACKING_URI`, else ./mlflow.db) and builds the tidy table.

    Raises:
        XstiltsInputError: an unknown experiment or parent run, no matching run, no FINISHED one, or no usable value.
    """
    finished, status_counts, where = finished_runs(selection)
    tidy, problems = tidy_table(finished)
    if tidy.empty:
        reasons = "; ".join(problems["reason"].drop_duplicates().head(3))
        raise XstiltsInputError(f"no usable eval/<task>/<lang>/<metric> value in the FINISHED runs of {where}: "
                                f"{reasons}")
    return Collected(tidy, status_counts, problems, f"{where}, filter: {selection.filter_string()}")


def finished_runs(selection: RunSelection) -> tuple[pd.DataFrame, dict[str, int], str]:
    """The FINISHED `evaluate` runs of `selection` (`mlflow.search_runs` rows), the matching runs by status, and
    where they were searched, in words.

    Raises:
        XstiltsInputError: an unknown experiment or parent run, no matching run, or no FINISHED one.
    """
    uri = tracking.default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment_ids = _experiment_ids(MlflowClient(), selection, uri)
    runs = mlflow.search_runs(experiment_ids=experiment_ids, filter_string=selection.filter_string(),
                              search_all_experiments=experiment_ids is None)
    where = f"{selection.describe()} in the tracking store {uri}"
    if runs.empty:
        raise XstiltsInputError(f"no `{EVALUATE_PHASE}` runs match {where}")
    status_counts = runs["status"].value_counts().to_dict()
    if "FINISHED" not in status_counts:
        raise XstiltsInputError(f"{len(runs)} `{EVALUATE_PHASE}` runs match {where}, but none is FINISHED "
                                f"({', '.join(f'{count} {status}' for status, count in status_counts.items())})")
    return runs[runs["status"] == "FINISHED"], status_counts, where


def _experiment_ids(client: MlflowClient, selection: RunSelection, uri: str) -> list[str] | None:
    """The experiment to search: the named one, else the parent run's, else None (all experiments)."""
    if selection.experiment:
        experiment = client.get_experiment_by_name(selection.experiment)
        if experiment is None and selection.experiment.isdigit():
            try:
                experiment = client.get_experiment(selection.experiment)
            except MlflowException:
                experiment = None
        if experiment is None:
            known = ", ".join(repr(e.name) for e in client.search_experiments())
            raise XstiltsInputError(f"experiment {selection.experiment!r} does not exist in the tracking store {uri}; "
                                    f"expected a name or id among: {known}")
        return [experiment.experiment_id]
    if selection.parent_run_id:
        try:
            return [client.get_run(selection.parent_run_id).info.experiment_id]
        except MlflowException:
            raise XstiltsInputError(f"parent run {selection.parent_run_id!r} does not exist in the tracking store "
                                    f"{uri}") from None
    return None


def tidy_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`mlflow.search_runs` rows (FINISHED) -> (tidy table, problems): see the module docstring for what is left out."""
    runs = runs.reindex(columns=list(dict.fromkeys([*runs.columns, *_PARAM_COLUMNS])))
    missing = runs[_PARAM_COLUMNS].isna()
    incomplete = missing.any(axis=1)
    problems = [pd.DataFrame({
        "run_id": runs.loc[incomplete, "run_id"], "item": "params",
        "reason": ["missing param(s) " + ", ".join(p for p, absent in zip(REQUIRED_PARAMS, row) if absent)
                   for row in missing[incomplete].to_numpy()]})]
    long = _long_values(runs[~incomplete])
    reason = _value_problem(long)
    problems.append(_problems(long[reason.notna()], reason[reason.notna()]))
    long = long[reason.isna()].sort_values("start_time", kind="stable")
    superseded = long.duplicated(subset=[*CONFIG, "target_task", "seed", "lang", "metric"], keep="last")
    problems.append(_problems(long[superseded],
                              "superseded by a later run of the same configuration, seed and language"))
    tidy = long[~superseded][list(TIDY_COLUMNS)].reset_index(drop=True)
    return tidy, pd.concat(problems, ignore_index=True)[list(PROBLEM_COLUMNS)]


def _long_values(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per `eval/...` metric value of each run, with the run's configuration and the key's parts."""
    empty = pd.Series("", index=runs.index)
    identity = pd.DataFrame({
        "run_id": runs["run_id"], "start_time": runs["start_time"], "experiment_id": runs["experiment_id"],
        "parent_run_id": runs.get("tags.mlflow.parentRunId", empty).fillna(""),
        "method": runs["params.method"], "model": runs["params.model"],
        "intermediate_task": runs["params.intermediate_task"],
        "intermediate_source_lang": runs.get("params.intermediate_source_lang", empty).fillna(""),
        "run_task": runs["params.task"], "seed": runs["params.seed"],
    })
    identity.loc[identity["intermediate_task"] == NO_INTERMEDIATE, "intermediate_source_lang"] = ""
    metric_columns = [column for column in runs.columns if column.startswith("metrics.eval/")]
    long = identity.join(runs[metric_columns]).melt(id_vars=list(identity.columns), value_vars=metric_columns,
                                                    var_name="key", value_name="value").dropna(subset=["value"])
    long["key"] = long["key"].str.removeprefix("metrics.")
    long[["target_task", "lang", "metric"]] = long["key"].str.extract(_METRIC_KEY)
    for name, column in ((tracking.EVAL_SPLIT, "eval_split"), (tracking.OPTIMISTIC, "optimistic")):
        long = long.merge(_language_params(runs, name, column), on=["run_id", "target_task", "lang"], how="left")
    return long.fillna({"eval_split": UNRECORDED_SPLIT, "optimistic": ""})


def _language_params(runs: pd.DataFrame, name: str, column: str) -> pd.DataFrame:
    """The runs' `<name>/<task>/<lang>` params as rows (run_id, target_task, lang, `column`)."""
    pattern = re.compile(rf"^params\.{re.escape(name)}/([^/]+)/([^/]+)$")
    keys = [key for key in runs.columns if pattern.match(key)]
    params = runs.melt(id_vars="run_id", value_vars=keys, var_name="key", value_name=column).dropna(subset=[column])
    params[["target_task", "lang"]] = params.pop("key").str.extract(pattern)
    return params


def _problems(long: pd.DataFrame, reason) -> pd.DataFrame:
    return pd.DataFrame({"run_id": long["run_id"], "item": long["key"], "reason": reason})


def _value_problem(long: pd.DataFrame) -> pd.Series:
    """Why each value cannot be used (NaN where it can)."""
    task_lang = long["target_task"] + "/" + long["lang"]
    task_metric = long["target_task"] + "/" + long["metric"]
    checks = [
        (long["target_task"].isna(), "metric key is not eval/<task>/<lang>/<metric>"),
        (long["target_task"] != long["run_task"], "metric key's task differs from the run's `task` param"),
        (~long["target_task"].isin(TASKS), "unknown task"),
        (~task_lang.isin(_VALID_TASK_LANGS), "language not in the task's registry languages"),
        (~task_metric.isin(_VALID_TASK_METRICS), "metric not among the task's registry metrics"),
        (~long["value"].between(0, 100), "value off the 0-100 scale"),
    ]
    reason = pd.Series(pd.NA, index=long.index, dtype="object")
    for failed, message in reversed(checks):
        reason = reason.mask(failed, message)
    return reason

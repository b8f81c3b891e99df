"""One study's trained runs side by side: a column per `target` run (method and the settings that tell the runs
apart), with its zero-shot scores per language, averages, parameter counts, wall time and peak memory.

The analysis stage averages configurations (method x model x intermediate task) over seeds; this table is for a study
that varies other settings too, e.g. configs/panx-methods.yaml (full fine-tuning with frozen and with trainable word
embeddings, MAD-X, a task adapter). It reads the FINISHED `evaluate` runs of one experiment and their `target` runs:

    python -m benchmarks.methods_table --experiment panx-methods [--task panx] [--out table.md]
"""

import re
from pathlib import Path

import click
import mlflow
import pandas as pd

from analysis.benchmark import low_resource_langs
from benchmarks.run_all import markdown_table
from components import tracking
from components.errors import XstiltsInputError
from components.tasks import get_task
from pipelines.options import entry_point
from components.adapter_runs import LANG_ADAPTER_PARAM

RUN_ID = re.compile(r"[0-9a-f]{32}")
SETTINGS = ("lr", "task_reduction_factor", "freeze_word_embeddings")  # shown in a label when the runs differ in them


def run_label(params: pd.Series, varying: list[str]) -> str:
    return " ".join([params["method"], *(f"{name} {params[name]}" for name in varying)])


def varying_settings(targets: pd.DataFrame) -> list[str]:
    """The SETTINGS in which runs of the same method differ (the method itself is always in the label)."""
    return [name for name in SETTINGS if f"params.{name}" in targets
            and (targets.groupby("params.method")[f"params.{name}"].nunique() > 1).any()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def column(evaluate: pd.Series, target: pd.Series, task: str, low_resource: tuple[str, ...]) -> dict:
    """One target run's values: scores per language and the summary rows."""
    metric = get_task(task).headline_metric
    prefix, suffix = f"metrics.eval/{task}/", f"/{metric}"
    scores = {key[len(prefix):-len(suffix)]: value for key, value in evaluate.items()
              if key.startswith(prefix) and key.endswith(suffix) and pd.notna(value)}
    adapter_of = {lang: evaluate.get(f"params.{LANG_ADAPTER_PARAM}/{task}/{lang}") for lang in scores}
    # The param is the language's own lang_adapter run id, "fallback ..." or "none (method ...)"; absent for `full`.
    own_adapters = sorted(lang for lang, used in adapter_of.items() if isinstance(used, str) and RUN_ID.fullmatch(used))
    scored_low = [lang for lang in low_resource if lang in scores]
    return {
        "scores": scores,
        "trainable / total parameters": f"{int(target['params.trainable_params']):,} / "
                                        f"{int(target['params.total_params']):,}",
        f"English select {metric}": f"{target[f'metrics.select/{task}/en/{metric}']:.2f}",
        f"average {metric}, {len(scores)} languages (without en)":
            f"{mean(list(scores.values())):.2f} ({mean([v for k, v in scores.items() if k != 'en']):.2f})",
        f"low-resource average ({', '.join(scored_low)})": f"{mean([scores[lang] for lang in scored_low]):.2f}",
        "languages on their own language adapter": ", ".join(own_adapters) or "–",
        "target wall time": f"{(target['end_time'] - target['start_time']).total_seconds():.0f} s",
        "target peak RSS": f"{target['metrics.peak_rss_mb']:,.0f} MB",
    }


def methods_markdown(evaluates: pd.DataFrame, targets: pd.DataFrame, task: str, low_resource: tuple[str, ...]) -> str:
    """The summary table and the per-language table, one column per target run, in start order."""
    targets = targets.sort_values("start_time")
    varying = varying_settings(targets)
    # A target run evaluated again (e.g. after more language adapters were trained) is shown with its newest evaluation.
    by_train_run = (evaluates.sort_values("start_time").drop_duplicates("params.train_run_id", keep="last")
                    .set_index("params.train_run_id"))
    labels, columns = [], []
    for _, target in targets.iterrows():
        if target["run_id"] in by_train_run.index:
            labels.append(run_label(target.rename(lambda key: key.removeprefix("params.")), varying))
            columns.append(column(by_train_run.loc[target["run_id"]], target, task, low_resource))
    if not columns:
        raise XstiltsInputError(f"no FINISHED evaluate run of a {task} target run in the experiment")
    summary_rows = [key for key in columns[0] if key != "scores"]
    summary = [(row, *(values[row] for values in columns)) for row in summary_rows]
    langs = sorted({lang for values in columns for lang in values["scores"]},
                   key=lambda lang: (lang not in low_resource, lang))
    per_language = [(lang + (" (low-resource)" if lang in low_resource else ""),
                     *(f"{values['scores'][lang]:.2f}" if lang in values["scores"] else "–" for values in columns))
                    for lang in langs]
    return (markdown_table(("", *labels), summary) + "\n"
            + markdown_table((f"{task} {get_task(task).headline_metric}", *labels), per_language))


def finished_runs(experiment: str, phase: str, task_filter: str) -> pd.DataFrame:
    return mlflow.search_runs(experiment_names=[experiment], filter_string=(
        f"tags.`{tracking.TAG_PREFIX}phase` = '{phase}' and attributes.status = 'FINISHED'{task_filter}"))


@click.command()
@click.option("--experiment", required=True, help="The MLflow experiment of the study.")
@click.option("--task", default="panx", show_default=True, help="The target task.")
@click.option("--out", "out_path", default="", help="Also write the tables to this markdown file.")
@entry_point
def main(experiment: str, task: str, out_path: str) -> None:
    tracking.connect()
    if mlflow.get_experiment_by_name(experiment) is None:
        raise XstiltsInputError(f"no experiment {experiment!r} in the tracking store {mlflow.get_tracking_uri()}")
    get_task(task)
    targets = finished_runs(experiment, "target", f" and params.task = '{task}'")
    evaluates = finished_runs(experiment, "evaluate", "")
    if targets.empty or evaluates.empty:
        raise XstiltsInputError(f"experiment {experiment!r} has no FINISHED {task} target run with an evaluate run")
    markdown = methods_markdown(evaluates, targets, task, low_resource_langs(""))
    click.echo(markdown)
    if out_path:
        Path(out_path).write_text(markdown, encoding="utf-8")


if __name__ == "__main__":
    main()

"""Metric effect of bf16 evaluation: a study's trained runs scored again in fp32 and in bf16.

    python -m benchmarks.eval_precision --experiment xstilts-demo [--max-examples 500] \
        [--out benchmarks/results/eval-precision.json]

For each `target` run that the experiment's FINISHED evaluate runs scored (with the newest such run's languages, each
on the language adapter it was scored with), `pipelines.evaluate.evaluate_trained` scores it twice, `eval_precision` fp32
and bf16, on the first `--max-examples` examples of each language. Those runs go to the experiment
`<experiment>-eval-precision`, so that the study's own analysis never counts them. The JSON file holds the task's
headline metric per (target run, language) in both precisions, and the wall time of each evaluate run;
`benchmarks.run_all` summarises it per task and method in BENCHMARKS.md.
"""

import statistics
from pathlib import Path

import click
import mlflow
import pandas as pd

from benchmarks.common import machine, write_json
from benchmarks.methods_table import RUN_ID, finished_runs
from components import tracking
from components.errors import XstiltsInputError
from components.tasks import get_task
from pipelines.options import entry_point
from pipelines.evaluate import evaluate_trained
from components.adapter_runs import LANG_ADAPTER_PARAM

COMPARED = ("fp32", "bf16")


def _param(params: pd.Series, name: str) -> str:
    """A param of a `search_runs` row; "" where the run lacks it (NaN)."""
    value = params.get(f"params.{name}")
    return value if isinstance(value, str) else ""


def lang_adapter_options(evaluate: pd.Series) -> tuple[str, str]:
    """(--lang-adapter-runs, --lang-adapter-fallback) that give each language the adapter it was evaluated with, read
    from the run's per-language params (a step run of `main` has no MLproject params; a CLI run may have none)."""
    task, source_run = _param(evaluate, "task"), _param(evaluate, "lang_adapter_run_id")
    used = [_param(evaluate, tracking.language_param_key(LANG_ADAPTER_PARAM, task, lang))
            for lang in _param(evaluate, "langs").split(",")]
    own_runs = sorted({value for value in used if RUN_ID.fullmatch(value)} - {source_run})
    fallbacks = {value.split()[1] for value in used if value.startswith("fallback ")}
    return ",".join(own_runs), fallbacks.pop() if fallbacks else ""


def evaluated_targets(experiment: str) -> pd.DataFrame:
    """The newest FINISHED evaluate run of each trained `target` run in the experiment (retrieval runs have none)."""
    evaluates = finished_runs(experiment, "evaluate", "")
    if "params.train_run_id" not in evaluates:
        evaluates["params.train_run_id"] = ""
    trained = evaluates[evaluates["params.train_run_id"].fillna("") != ""]
    if trained.empty:
        raise XstiltsInputError(f"experiment {experiment!r} has no FINISHED evaluate run of a trained target run")
    return trained.sort_values("start_time").drop_duplicates("params.train_run_id", keep="last")


def score_both(evaluate: pd.Series, max_examples: int, batch_size: int) -> list[dict]:
    """One target run evaluated in each COMPARED precision: a row per language with the headline metric of each."""
    task = _param(evaluate, "task")
    metric = get_task(task).headline_metric
    scored = {}
    lang_adapter_runs, fallback = lang_adapter_options(evaluate)
    for precision in COMPARED:
        run_id = evaluate_trained(_param(evaluate, "train_run_id"), _param(evaluate, "langs"), batch_size,
                                  max_examples, lang_adapter_runs, fallback, precision)
        scored[precision] = tracking.run_summary(run_id)
    langs = _param(evaluate, "langs").split(",")
    return [{"train_run_id": _param(evaluate, "train_run_id"), "task": task, "method": _param(evaluate, "method"),
             "intermediate_task": _param(evaluate, "intermediate_task"), "lang": lang, "metric": metric,
             **{precision: metrics[tracking.metric_key("eval", task, lang, metric)]
                for precision, (_, metrics) in scored.items()},
             **{f"{precision}_run_seconds": seconds for precision, (seconds, _) in scored.items()}}
            for lang in langs]


def summarize(rows: list[dict]) -> list[dict]:
    """Per (task, method): how far bf16 moved the per-language metric and the language average, and run times."""
    summaries = []
    for (task, method), group in pd.DataFrame(rows).groupby(["task", "method"], sort=True):
        differences = group["bf16"] - group["fp32"]
        averages = group.groupby("train_run_id")[list(COMPARED)].mean()
        times = group.drop_duplicates("train_run_id")
        summaries.append({
            "task": task, "method": method, "metric": group["metric"].iloc[0],
            "target_runs": group["train_run_id"].nunique(), "languages": len(group),
            "mean_abs_difference": float(differences.abs().mean()),
            "max_abs_difference": float(differences.abs().max()),
            "max_abs_average_difference": float((averages["bf16"] - averages["fp32"]).abs().max()),
            "fp32_run_seconds": float(statistics.fmean(times["fp32_run_seconds"])),
            "bf16_run_seconds": float(statistics.fmean(times["bf16_run_seconds"])),
        })
    return summaries


@click.command()
@click.option("--experiment", required=True, help="The MLflow experiment of the study whose runs are scored again.")
@click.option("--max-examples", type=int, default=500, show_default=True,
              help="Score the first N evaluation examples of each language; 0 = all.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/eval-precision.json"), show_default=True)
@entry_point
def main(experiment: str, max_examples: int, batch_size: int, out_path: Path) -> None:
    tracking.connect()
    if mlflow.get_experiment_by_name(experiment) is None:
        raise XstiltsInputError(f"no experiment {experiment!r} in the tracking store {mlflow.get_tracking_uri()}")
    targets = evaluated_targets(experiment)
    mlflow.set_experiment(f"{experiment}-eval-precision")
    rows = [row for _, evaluate in targets.iterrows() for row in score_both(evaluate, max_examples, batch_size)]
    summaries = summarize(rows)
    write_json(out_path, {"machine": machine(), "settings": {"experiment": experiment, "max_examples": max_examples,
                                                             "batch_size": batch_size},
                          "rows": rows, "summaries": summaries})
    for summary in summaries:
        click.echo(f"{summary['task']} {summary['method']}: bf16 - fp32 {summary['metric']} mean |difference| "
                   f"{summary['mean_abs_difference']:.2f}, max {summary['max_abs_difference']:.2f} over "
                   f"{summary['languages']} languages; evaluate run {summary['fp32_run_seconds']:.0f} s (fp32) vs "
                   f"{summary['bf16_run_seconds']:.0f} s (bf16)")
    click.echo(f"wrote {out_path}")


if __name__ == "__main__":
    main()

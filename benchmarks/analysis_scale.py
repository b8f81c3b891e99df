"""Analysis time at scale: `analysis` on a grid of synthetic `evaluate` runs (10,000 by default).

    python -m benchmarks.analysis_scale --out results/analysis-scale [--runs 10000]

The runs are built in memory in the shape `mlflow.search_runs` returns (one row per run: params, `eval_split/...`
params and `eval/<task>/<lang>/<metric>` metrics for every language of the run's task), so the timing covers
`collect.tidy_table` (runs -> tidy table) and `aggregate.analyse` (every table: averages, gains, bootstrap intervals)
but not the MLflow query nor the typological distances (URIEL+ lookups; no distances are passed) nor the report files.
The grid: full and MAD-X, two models, intermediate tasks `none` and synthetic English ones, five XTREME-R targets
(classification, tagging and QA) and five seeds, filled in that order until `--runs` runs exist.
"""

import itertools
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from analysis import aggregate, benchmark, collect
from benchmarks.common import machine, write_json
from components.tasks import TASKS
from components.tracking import EVAL_SPLIT

TARGET_TASKS = ("xnli", "pawsx", "panx", "udpos", "xquad")
METHODS = ("full", "madx")
MODELS = ("model-a", "model-b")
SEEDS = tuple(str(seed) for seed in range(1, 6))
NO_DISTANCES = pd.DataFrame(columns=["source_lang", "lang", "distance", "distance_note"])


def intermediate_tasks():
    """`none` (the baseline), then as many synthetic English intermediate tasks as the grid needs."""
    yield collect.NO_INTERMEDIATE, ""
    for number in itertools.count(1):
        yield f"intermediate-{number}", "en"


def synthetic_runs(n_runs: int, seed: int = 0) -> pd.DataFrame:
    """`n_runs` FINISHED evaluate runs as `mlflow.search_runs` rows, with uniform scores in [30, 90)."""
    rng = np.random.default_rng(seed)
    grid = ((intermediate, method, model, task, run_seed)
            for intermediate in intermediate_tasks()
            for method, model, task, run_seed in itertools.product(METHODS, MODELS, TARGET_TASKS, SEEDS))
    rows = []
    for number, ((intermediate, source), method, model, task, run_seed) in enumerate(itertools.islice(grid, n_runs)):
        spec = TASKS[task]
        row = {"run_id": f"run{number}", "start_time": pd.Timestamp(number, unit="s"), "experiment_id": "1",
               "status": "FINISHED", "params.task": task, "params.model": model, "params.method": method,
               "params.seed": run_seed, "params.intermediate_task": intermediate,
               "params.intermediate_source_lang": source}
        for lang in spec.langs:
            row[f"params.{EVAL_SPLIT}/{task}/{lang}"] = "test"
            row.update({f"metrics.eval/{task}/{lang}/{metric}": score
                        for metric, score in zip(spec.metrics, rng.uniform(30, 90, len(spec.metrics)))})
        rows.append(row)
    return pd.DataFrame(rows)


def run_analysis_scale(out_dir: Path, n_runs: int = 10_000) -> dict:
    """Times the analysis of `n_runs` synthetic runs, writes `analysis-scale.json` under `out_dir`, returns it."""
    runs = synthetic_runs(n_runs)
    settings = aggregate.Settings(benchmark.low_resource_langs(""))
    start = time.perf_counter()
    tidy, problems = collect.tidy_table(runs)
    tidied = time.perf_counter()
    analysis = aggregate.analyse(tidy, NO_DISTANCES, settings)
    analysed = time.perf_counter()
    if not problems.empty:
        raise RuntimeError(f"synthetic runs rejected by collect: {problems['reason'].iloc[0]}")
    result = {"runs": n_runs, "tidy_rows": len(tidy), "task_gains": len(analysis.task_gains),
              "tidy_table_s": tidied - start, "analyse_s": analysed - tidied, "total_s": analysed - start,
              "n_resamples": settings.n_resamples}
    click.echo(f"analysis of {n_runs} runs ({len(tidy)} values): tidy table {result['tidy_table_s']:.1f} s, "
               f"analyse {result['analyse_s']:.1f} s")
    payload = {"machine": machine(), "result": result}
    write_json(out_dir / "analysis-scale.json", payload)
    return payload


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--runs", "n_runs", type=int, default=10_000, show_default=True)
def main(out_dir: Path, n_runs: int) -> None:
    run_analysis_scale(out_dir, n_runs)


if __name__ == "__main__":
    main()

"""`analysis`: `evaluate` runs from the tracking server -> XTREME / XTREME-R scores, gains, intervals, typology.

Reads: FINISHED `evaluate` runs (metrics `eval/<task>/<lang>/<metric>`) selected by `--experiment`,
`--parent-run-id` and `--tags`. Writes: `--output-dir` (tables/*.csv and *.md, figures/*.png, report.md,
report.html), the same files as artifacts `analysis/` of one `analysis` run, and a short summary on stdout. The
analysis run is nested under the study's `main` run (`--parent-run-id`, else the newest `main` run of the study its
runs belong to), logs the headline numbers as metrics (`report.headline_metrics`) and the per-language scores as the
MLflow table `analysis/per_language.table.json`.
Run it as `mlflow run . -e analysis --experiment-name xstilts-demo -P experiment=xstilts-demo` (the analysis run then
sits next to the study's runs) or `python -m analysis.main --experiment xstilts-demo`.
"""

from pipelines.options import command

main = command("analysis", __doc__, "analysis.main:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading pandas or mlflow

import re
from pathlib import Path

import click
import pandas as pd

from analysis import aggregate, benchmark, collect, report, typology
from components import tracking
from components.tasks import TASKS

ARTIFACT_PATH = "analysis"
PER_LANGUAGE_TABLE = "per_language.table.json"


REGISTERED_MODEL_PREFIX = "xstilts"


def best_by_selection(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and target task, the candidate (an evaluate run: `CONFIG`, `target_task`, `train_run_id`,
    `selection`) whose English selection score is highest; candidates without one are left out."""
    scored = candidates.dropna(subset=["selection"])
    best = scored.loc[scored.groupby([*collect.CONFIG, "target_task"], sort=True)["selection"].idxmax()]
    return best.reset_index(drop=True)


def registered_name(row) -> str:
    """`xstilts-<task>-<method>-<model>-<intermediate>`, in the characters registered model names keep readable."""
    label = f"{row['target_task']} {aggregate.config_label(row)}"
    return re.sub(r"[^\w.-]+", "-", f"{REGISTERED_MODEL_PREFIX} {label}").strip("-")


def register_best_models(tidy: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Registers the trained model of each cell's best run by English selection (`best_by_selection`): target-
    language scores never choose. Returns (registered name, version, target run id) of each."""
    runs = tidy[["run_id", *collect.CONFIG, "target_task"]].drop_duplicates("run_id")
    selection = [tracking.selection_of_evaluate_run(run_id, task, TASKS[task].headline_metric)
                 for run_id, task in zip(runs["run_id"], runs["target_task"])]
    runs = runs.assign(train_run_id=[train_run_id for train_run_id, _ in selection],
                       selection=[score for _, score in selection])
    registered = []
    for _, best in best_by_selection(runs).iterrows():
        model_id = tracking.trained_model_id(best["train_run_id"]) if best["train_run_id"] else None
        if model_id:
            name = registered_name(best)
            registered.append((name, tracking.register_model(model_id, name), best["train_run_id"]))
    return registered


def study_run_of(tidy) -> str:
    """The `main` run of the study the analysed runs belong to, under which the analysis run is nested: the newest
    `main` run (a rerun's, which reused them) of the one study their parent runs name; "" for runs of no study or
    of several."""
    parents = tidy["parent_run_id"].unique()
    studies = {tracking.study_of_run(run_id) for run_id in parents if run_id}
    if len(studies) != 1:
        return ""
    [(experiment_id, study)] = studies
    return tracking.study_run_id(experiment_id, study) if study else ""


def run(experiment: str, parent_run_id: str, tags: str, output_dir: str, low_resource_langs: str, langs: str,
        distance: str, n_bootstrap: int, bootstrap_seed: int, include_optimistic: bool, register_best: bool) -> None:
    settings = aggregate.Settings(benchmark.low_resource_langs(low_resource_langs), n_bootstrap, bootstrap_seed,
                                  benchmark.language_scope(langs), include_optimistic)
    selection = collect.RunSelection(experiment, collect.check_run_id(parent_run_id), collect.parse_tags(tags))
    typology.check_kind(distance)
    folder = Path(output_dir)
    report.check_output_dir(folder)
    collected = collect.collect(selection)
    distances = typology.distances(aggregate.source_target_pairs(collected.tidy), distance)
    analysis = aggregate.analyse(collected.tidy, distances, settings)
    params = {"experiment": experiment, "parent_run_id": parent_run_id, "tags": tags, "distance": distance,
              "low_resource_langs": ",".join(settings.low_resource_langs), "langs": langs, "n_bootstrap": n_bootstrap,
              "bootstrap_seed": bootstrap_seed, "include_optimistic": include_optimistic,
              "register_best": register_best, "n_finished_runs": collected.status_counts["FINISHED"],
              "n_ignored_runs": sum(collected.ignored_runs.values())}
    study_run_id = parent_run_id or study_run_of(collected.tidy)
    with tracking.phase_run("analysis", params, parent_run_id=study_run_id) as run_id:
        report.write_report(report.prepare_output_dir(folder), collected, analysis, settings, distance, run_id)
        tracking.log_dir(folder, ARTIFACT_PATH)
        tracking.log_metrics(report.headline_metrics(analysis), step=0)
        tracking.log_table(analysis.per_language, f"{ARTIFACT_PATH}/{PER_LANGUAGE_TABLE}")
        registered = register_best_models(collected.tidy) if register_best else []
        tracking.log_params({f"registered/{name}": f"version {version}: target run {run}"
                             for name, version, run in registered})
    click.echo(report.summary(collected, analysis, folder, run_id))
    for name, version, target_run_id in registered:
        click.echo(f"registered {name} version {version}: the model of target run {target_run_id}")

"""The demo's closing summary: what ran, the main table with only what was computed, and one line per question the
study asks (README.md: what the suite answers), read from the tracking store and the Optuna journal.

Run after the `analysis` stage, with the same `--langs`:
`python -m analysis.summary --experiment xstilts-demo --langs en,de,... --journal outputs/optuna/journal.log`.
It writes nothing; the report and the analysis run are the `analysis` stage's.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

NO_VALUE = "–"


@click.command(help=__doc__)
@click.option("--experiment", required=True, help="The study's MLflow experiment.")
@click.option("--langs", default="", help="The languages the averages cover, as given to `analysis` (comma-separated).")
@click.option("--journal", default="", help="The Optuna journal file of the demo's study; empty = no study.")
@click.option("--wall-s", type=int, default=0, help="The demo's wall time so far in seconds, shown when given.")
def main(experiment: str, langs: str, journal: str, wall_s: int) -> None:
    from analysis import aggregate, benchmark, collect, typology

    settings = aggregate.Settings(benchmark.low_resource_langs(""), langs=benchmark.language_scope(langs))
    collected = collect.collect(collect.RunSelection(experiment, "", {}))
    distances = typology.distances(aggregate.source_target_pairs(collected.tidy), "syntactic")
    analysis = aggregate.analyse(collected.tidy, distances, settings)
    lines = [f"== summary of experiment {experiment}" + (f" ({wall_s:,} s wall)" if wall_s else ""),
             *what_ran(experiment, collected.status_counts.get("FINISHED", 0), journal),
             "", *main_table(analysis.task_averages), "",
             *language_table(analysis.per_language, "xnli"), "",
             "what the study asks (one seed: differences without intervals):",
             *answers(analysis, settings.low_resource_langs)]
    click.echo("\n".join(lines))


def what_ran(experiment: str, n_evaluate_runs: int, journal: str) -> list[str]:
    """The grid's step counts (the newest `main` run's `grid/*` metrics), the evaluate runs read, and the Optuna
    study in `journal`."""
    import mlflow

    lines = []
    main_runs = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`xlt.phase` = 'main'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
    if len(main_runs):
        counts = {name: main_runs.iloc[0].get(f"metrics.grid/{name}") for name in
                  ("done", "cached", "failed", "blocked", "remaining")}
        shown = ", ".join(f"{name} {int(value)}" for name, value in counts.items() if pd.notna(value))
        lines.append(f"grid: main run {main_runs.iloc[0]['run_id']}: {shown or 'no step counts logged'}")
    lines.append(f"analysed: {n_evaluate_runs} FINISHED evaluate runs")
    if journal:
        lines.extend(study_lines(Path(journal)))
    return lines


def study_lines(journal: Path) -> list[str]:
    """One line per Optuna study in `journal`: trials by state and the best trial's values."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not journal.exists():
        return [f"optuna: no journal at {journal}"]
    storage = JournalStorage(JournalFileBackend(str(journal)))
    lines = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = pd.Series([trial.state.name.lower() for trial in study.trials]).value_counts()
        counts = ", ".join(f"{count} {state}" for state, count in states.items())
        completed = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
        best = (f"; best {', '.join(f'{name} {value:.3g}' for name, value in study.best_params.items())} "
                f"(English select {study.best_value:.2f})") if completed else ""
        lines.append(f"optuna: study {summary.study_name}: {len(study.trials)} trials ({counts}){best}; "
                     f"optuna-dashboard {journal}")
    return lines or [f"optuna: no study in {journal}"]


def configuration(frame: pd.DataFrame) -> pd.Series:
    """`method · intermediate(source)`: the model is left out, the demo has one."""
    from analysis.aggregate import intermediate_label

    return frame["method"] + " · " + intermediate_label(frame)


def main_table(task_averages: pd.DataFrame) -> list[str]:
    """Each task's average over its languages (without English in brackets), one row per configuration, one column
    per task; cells that were not computed (an incomplete cell) are left out, not shown as NaN."""
    computed = task_averages.dropna(subset=["avg"])
    if computed.empty:
        return ["main table: no complete cell (see the analysis report's coverage table)"]
    computed = computed.assign(configuration=configuration(computed),
                               column=computed["target_task"] + " " + computed["metric"] + " ("
                               + computed["n_langs"].astype(str) + " langs)",
                               shown=[f"{avg:.1f} ({no_en:.1f})" for avg, no_en in
                                      zip(computed["avg"], computed["avg_no_en"])])
    table = computed.pivot(index="configuration", columns="column", values="shown").fillna(NO_VALUE)
    return ["main table: average over each task's languages (without English):",
            table.rename_axis(index=None, columns=None).to_string()]


def language_table(per_language: pd.DataFrame, task: str) -> list[str]:
    """`task`'s headline score per language, one row per configuration."""
    from analysis.benchmark import score_metric

    rows = per_language[(per_language["target_task"] == task)
                        & (per_language["metric"] == score_metric(task, "f1"))]
    if rows.empty:
        return []
    rows = rows.assign(configuration=configuration(rows))
    grid = rows.pivot(index="configuration", columns="lang", values="value")
    return [f"{task} {score_metric(task, 'f1')} per language:",
            grid.rename_axis(index=None, columns=None).to_string(float_format="{:.1f}".format)]


def answers(analysis, low_resource_langs: tuple[str, ...]) -> list[str]:
    """One line per question: does intermediate-task training help, does its source language matter, do adapters
    beat full fine-tuning on low-resource languages."""
    gains = analysis.task_gains.dropna(subset=["gain"])
    gains = gains.assign(arm=configuration(gains))
    return [f"- does intermediate-task training help? gain over no intermediate task, "
            f"{_gain_list(gains) or 'no complete pair with the baseline'}",
            f"- does the intermediate task's source language matter? {_source_language(gains)}",
            f"- do adapters beat full fine-tuning on low-resource languages? "
            f"{_low_resource_difference(analysis.low_resource)}"]


def _gain_list(gains: pd.DataFrame) -> str:
    """`task: arm gain, arm gain; task: ...`, each gain over the same method without an intermediate task."""
    return "; ".join(f"{task}: " + ", ".join(f"{row.arm} {row.gain:+.1f}" for row in rows.itertuples())
                     for task, rows in gains.groupby("target_task", sort=False))


def _source_language(gains: pd.DataFrame) -> str:
    """Gains of arms that share an intermediate task in different source languages; where the study has none, the
    gains per source language and why they cannot answer on their own."""
    pairs = gains.groupby(["method", "target_task", "intermediate_task"])["intermediate_source_lang"].nunique()
    if (pairs > 1).any():
        shared = gains.set_index(["method", "target_task", "intermediate_task"]).loc[pairs[pairs > 1].index]
        return "; ".join(f"{row.arm} on {row.Index[1]}: {row.gain:+.1f}" for row in shared.itertuples())
    if gains["intermediate_source_lang"].nunique() > 1:
        arms = ", ".join(sorted(set(gains["arm"])))
        return f"the arms {arms} differ in task as well as source language: their gains above cannot tell the two apart"
    return "the study trains no intermediate task in more than one source language"


def _low_resource_difference(low_resource: pd.DataFrame) -> str:
    """The low-resource average of each adapter method minus full fine-tuning's, per task and intermediate arm."""
    computed = low_resource.dropna(subset=["avg"])
    keys = ["model", "intermediate_task", "intermediate_source_lang", "target_task", "metric"]
    full = computed[computed["method"] == "full"].set_index(keys)["avg"]
    lines = []
    for row in computed[computed["method"] != "full"].itertuples():
        key = tuple(getattr(row, name) for name in keys)
        if key in full.index:
            lines.append(f"{row.method} {row.avg:.1f} vs full {full[key]:.1f} on {row.target_task} "
                         f"({row.low_resource_langs}): {row.avg - full[key]:+.1f}")
    return "; ".join(lines) or "no adapter run beside a full fine-tuning run"


if __name__ == "__main__":
    main()

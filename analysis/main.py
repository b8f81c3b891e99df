"""`analysis`: `evaluate` runs from the tracking server -> XTREME / XTREME-R scores, gains, intervals, typology.

Reads: FINISHED `evaluate` runs (metrics `eval/<task>/<lang>/<metric>`) selected by `--experiment`,
`--parent-run-id` and `--tags`. Writes: `--output-dir` (tables/*.csv and *.md, figures/*.png, report.md,
report.html), the same files as artifacts `analysis/` of one `analysis` run, and a short summary on stdout.
Run it as `mlflow run . -e analysis --experiment-name xstilts-demo -P experiment=xstilts-demo` (the analysis run then
sits next to the study's runs) or `python -m analysis.main --experiment xstilts-demo`.
"""

from pipelines.options import command

main = command("analysis", __doc__, "analysis.main:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading pandas or mlflow

from pathlib import Path

import click

from analysis import aggregate, benchmark, collect, report, typology
from components import tracking

ARTIFACT_PATH = "analysis"


def run(experiment: str, parent_run_id: str, tags: str, output_dir: str, low_resource_langs: str, langs: str,
        distance: str, n_bootstrap: int, bootstrap_seed: int, include_optimistic: bool) -> None:
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
              "n_finished_runs": collected.status_counts["FINISHED"],
              "n_ignored_runs": sum(collected.ignored_runs.values())}
    with tracking.phase_run("analysis", params) as run_id:
        report.write_report(report.prepare_output_dir(folder), collected, analysis, settings, distance, run_id)
        tracking.log_dir(folder, ARTIFACT_PATH)
    click.echo(report.summary(collected, analysis, folder, run_id))

"""RESULTS.md and its figures, written from a study's tracking store by one command:

    python -m analysis.results --experiment source-language --config configs/source-language.yaml \\
        --plan-file outputs/source-language/plan.txt --journal outputs/source-language/journal.log

Reads the FINISHED evaluate runs of the experiment (`MLFLOW_TRACKING_URI`) through the analysis stage's own
functions (`analysis.aggregate`: every definition is there and in the report), the study's config (its header
comment is the design and its cuts), the runs' start and end times (wall times), the plan printed before the grid ran
and the Optuna journal of its tune studies. Writes `--output` (RESULTS.md) and `--figures-dir` (PNG files it links).
Every number in the file comes from the store; the prose around them is chosen by the intervals: a difference is
called distinguishable from zero only when its 95% bootstrap interval over seeds excludes zero.
"""

from __future__ import annotations

import os
import platform
import shlex
from datetime import datetime, timezone
from pathlib import Path

import click

from pipelines.options import entry_point

GAIN_KINDS = (("gain", "all languages"), ("gain_no_en", "the languages other than English"),
              ("gain_low_resource", "the low-resource languages"))
STUDY_SCRIPT = Path("scripts/source_language_study.sh")
HEATMAP, SCATTER, METHODS = "gains_per_language.png", "gain_vs_distance.png", "methods_low_resource.png"


@click.command(help=__doc__)
@click.option("--experiment", required=True, help="The study's MLflow experiment.")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The study config the store's runs were made from.")
@click.option("--output", default="RESULTS.md", show_default=True, help="The Markdown file written.")
@click.option("--figures-dir", default="results", show_default=True,
              help="Where the figures go (linked from --output, relative to its folder).")
@click.option("--plan-file", default="", help="What `main -P plan=true` printed before the grid ran; empty = none.")
@click.option("--journal", default="", help="The Optuna journal of the study's tune studies; empty = none.")
@click.option("--n-bootstrap", type=int, default=10_000, show_default=True, help="Bootstrap resamples of the seeds.")
@entry_point
def main(experiment: str, config_path: str, output: str, figures_dir: str, plan_file: str, journal: str,
         n_bootstrap: int) -> None:
    from analysis import aggregate, benchmark, collect, typology

    config_file = Path(config_path)
    config = _read_config(config_file)
    settings = aggregate.Settings(benchmark.low_resource_langs(""), n_bootstrap,
                                  langs=benchmark.language_scope(",".join(evaluated_languages(config))))
    collected = collect.collect(collect.RunSelection(experiment, "", ()))
    distances = typology.distances(aggregate.source_target_pairs(collected.tidy), typology.DEFAULT_DISTANCE)
    analysis = aggregate.analyse(collected.tidy, distances, settings)
    output_path, figures = Path(output), Path(figures_dir)
    figures.mkdir(parents=True, exist_ok=True)
    figure_links = {name: os.path.relpath(figures / name, output_path.parent or Path("."))
                    for name in draw_figures(analysis, figures)}
    text = results_markdown(experiment, config_file, config, collected, analysis, settings, study_runs(experiment),
                            Path(plan_file).read_text(encoding="utf-8") if plan_file else "",
                            journal, figure_links, given_options(click.get_current_context()))
    partial = output_path.with_name(output_path.name + ".partial")  # a reader never sees half a file
    partial.write_text(text, encoding="utf-8")
    partial.replace(output_path)
    click.echo(f"wrote {output_path} and {len(figure_links)} figures in {figures}")


def given_options(context: click.Context) -> list[str]:
    """The options of this command that differ from their defaults, as a command line repeats them."""
    given = []
    for option in context.command.params:
        value = context.params[option.name]
        if value != option.default:
            given += [option.opts[0], shlex.quote(str(value))]
    return given


def _read_config(path: Path) -> dict:
    """The study config, checked as `main` checks it: a bad file is one error naming it, before anything is read."""
    from components.grid import read_config
    from components.options import parameter_names
    from pipelines.main import STEP_ENTRIES

    return read_config(path, {entry: parameter_names(entry) for entry in STEP_ENTRIES})


def evaluated_languages(config: dict) -> list[str]:
    """Every language some target of the config evaluates, in first-seen order (the averages' scope)."""
    langs: dict[str, None] = {}
    for target in config["targets"]:
        for lang in str((target.get("evaluate") or {}).get("langs", "")).split(","):
            if lang.strip():
                langs[lang.strip()] = None
    return list(langs)


def header_comment(path: Path) -> str:
    """The config file's leading comment lines, without `# `: the study's design and its cuts, as its author wrote
    them beside the settings."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


def study_runs(experiment: str):
    """Every run of the experiment (phase, status, start and end times), as `mlflow.search_runs` returns them."""
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], max_results=50_000)


def wall_times(runs) -> list[tuple[str, str]]:
    """(what, wall time) rows: the whole study from its first run's start to its last step's end (analysis runs left
    out), each `main` and `tune` run, and the summed run time of each phase's runs (they overlap with workers > 1)."""
    import pandas as pd

    runs = runs[runs["tags.xlt.phase"].fillna("") != "analysis"]
    ended = runs.dropna(subset=["end_time"])
    rows = []
    if len(ended):
        span = ended["end_time"].max() - runs["start_time"].min()
        rows.append(("study, first run start to last run end", _duration(span.total_seconds())))
    for phase in ("tune", "main"):
        for _, run in ended[ended["tags.xlt.phase"] == phase].sort_values("start_time").iterrows():
            name = run.get("tags.mlflow.runName", run["run_id"])
            rows.append((f"`{name}` ({run['status']})", _duration((run["end_time"] - run["start_time"]).total_seconds())))
    steps = ended[~ended["tags.xlt.phase"].isin(["tune", "main"])]
    for phase, group in steps.groupby("tags.xlt.phase"):
        seconds = (group["end_time"] - group["start_time"]).dt.total_seconds()
        rows.append((f"{phase} runs (every attempt, failed and superseded ones too): {len(group)}, summed",
                     _duration(float(seconds.sum()))
                     + f" (median {pd.Series(seconds).median():.0f} s)"))
    return rows


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{seconds:,.0f} s ({minutes} min {rest:02d} s)"


def with_interval(mean: float, low: float, high: float) -> str:
    """`+1.2 [-0.3, +2.5]`: a seed-mean difference and its 95% interval; `n/a` where nothing was computed."""
    import math

    if mean is None or math.isnan(mean):
        return "n/a"
    if low is None or math.isnan(low):
        return f"{mean:+.1f} [no interval]"
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def distinguishable(low: float, high: float) -> bool:
    """A difference is distinguishable from zero when its 95% interval excludes zero."""
    return bool(low > 0 or high < 0)


def difference_rows(table, label) -> list[list[str]]:
    """One row per configuration of a gain or difference table: each kind of average with its interval, and which
    of them are distinguishable from zero."""
    rows = []
    for _, row in table.iterrows():
        cells = [with_interval(row[kind], row[f"{kind}_ci_low"], row[f"{kind}_ci_high"]) for kind, _ in GAIN_KINDS]
        clear = [name for kind, name in GAIN_KINDS if distinguishable(row[f"{kind}_ci_low"], row[f"{kind}_ci_high"])]
        rows.append([label(row), row["target_task"], *cells, str(int(row["n_seeds"])), ", ".join(clear) or "none"])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) if rows else "(no rows: see the notes)"


def averages_rows(task_averages) -> list[list[str]]:
    from analysis.aggregate import AVERAGE_COLUMNS, config_label

    rows = []
    for _, row in task_averages.dropna(subset=["avg"]).iterrows():
        cells = [f"{row[column]:.1f}" + ("" if row[column + "_std"] != row[column + "_std"] else
                                         f" ± {row[column + '_std']:.1f}") for column in AVERAGE_COLUMNS]
        rows.append([config_label(row), row["target_task"], row["metric"], *cells, str(int(row["n_seeds"]))])
    return rows


def correlation_rows(correlations, label) -> list[list[str]]:
    rows = []
    for _, row in correlations.iterrows():
        rho = "n/a" if row["note"] else f"{row['spearman_rho']:+.2f}"
        p_value = "" if row["note"] else f"{row['p_value']:.3f}"
        rows.append([label(row), row["target_task"], str(int(row["n"])), rho, p_value, row["note"]])
    return rows


def answers(analysis) -> list[str]:
    """The answers in words, chosen by the intervals."""
    from analysis.aggregate import config_label

    def said(table, subject, reference) -> list[str]:
        lines = []
        for _, row in table.iterrows():
            parts = []
            for kind, name in GAIN_KINDS:
                low, high = row[f"{kind}_ci_low"], row[f"{kind}_ci_high"]
                if row[kind] != row[kind]:  # NaN: not computed
                    continue
                if distinguishable(low, high):
                    parts.append(f"{'higher' if row[kind] > 0 else 'lower'} on {name} "
                                 f"({with_interval(row[kind], low, high)})")
                else:
                    parts.append(f"not distinguishable from {reference} on {name} "
                                 f"({with_interval(row[kind], low, high)})")
            lines.append(f"- {subject(row)} on {row['target_task']}: " + "; ".join(parts) + ".")
        return lines

    out = ["**Does intermediate-task training help?** Each arm against the same method without an intermediate task "
           "(MAD-X for adapter_stilts):"]
    out += said(analysis.task_gains, config_label, "no intermediate task") or ["- no gain could be computed."]
    out += ["", "**Does the source language matter?** The same intermediate task in another source language against "
                "it in English:"]
    out += said(analysis.task_source_differences, config_label, "the English source") or [
        "- the store has no intermediate task trained in English and in another language."]
    pooled = pooled_over_sources(analysis)
    for _, row in pooled[pooled["note"] == ""].iterrows():
        verdict = ("gains fall as the source language grows more distant from the target language"
                   if row["p_value"] < 0.05 and row["spearman_rho"] < 0 else
                   "gains rise with the distance" if row["p_value"] < 0.05 else
                   "no rank correlation distinguishable from zero at p < 0.05")
        out.append(f"- gain vs typological distance, {row['method']} · {row['intermediate_task']} (every source "
                   f"language) on {row['target_task']}: Spearman rho {row['spearman_rho']:+.2f} over {int(row['n'])} (source, target) "
                   f"pairs, p = {row['p_value']:.3f}: {verdict}.")
    out += ["", "**Do adapters beat full fine-tuning?** Each adapter method against full fine-tuning after the same "
                "arm:"]
    out += said(analysis.task_method_differences, config_label, "full fine-tuning") or [
        "- the store has no adapter run beside a full fine-tuning run."]
    return out


def pooled_over_sources(analysis):
    """The pooled correlations of intermediate tasks trained in more than one source language (for one source
    language they repeat the arm's own)."""
    gains = analysis.language_gains
    keys = ["method", "model", "intermediate_task", "target_task", "metric"]
    sources = gains.groupby(keys)["intermediate_source_lang"].nunique().rename("n_sources").reset_index()
    pooled = analysis.pooled_correlations.merge(sources, on=keys)
    return pooled[pooled["n_sources"] > 1].drop(columns="n_sources")


def draw_figures(analysis, folder: Path) -> list[str]:
    """The figures RESULTS.md links; returns the names of those drawn (none without data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from analysis.aggregate import config_label
    from analysis.benchmark import score_metric

    drawn = []
    gains = analysis.language_gains
    gains = gains[gains["metric"] == gains["target_task"].map(lambda task: score_metric(task, "f1"))]
    if len(gains):
        grid = gains.assign(configuration=config_label(gains)).pivot_table(
            index="configuration", columns="lang", values="gain")
        figure, axis = plt.subplots(figsize=(max(8, 0.32 * grid.shape[1]), 1.2 + 0.45 * len(grid)),
                                    layout="constrained")
        limit = max(float(np.nanmax(np.abs(grid.to_numpy()))), 0.1)
        image = axis.imshow(grid.to_numpy(dtype=float), cmap=plt.get_cmap("RdBu").with_extremes(bad="lightgrey"),
                            vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        axis.set_xticks(range(grid.shape[1]), grid.columns, rotation=90, fontsize=8)
        axis.set_yticks(range(len(grid)), grid.index, fontsize=8)
        axis.set_title("gain over no intermediate task per target language (seed mean, points)", fontsize=10)
        figure.colorbar(image, ax=axis)
        _save(figure, folder / HEATMAP)
        drawn.append(HEATMAP)
    located = gains.dropna(subset=["distance"])
    if len(located):
        methods = sorted(located["method"].unique())
        figure, axes = plt.subplots(1, len(methods), squeeze=False, figsize=(5.5 * len(methods), 4.5),
                                    layout="constrained")
        for axis, method in zip(axes[0], methods):
            for source, rows in located[located["method"] == method].groupby("intermediate_source_lang"):
                axis.scatter(rows["distance"], rows["gain"], label=f"source {source}", s=14)
            axis.axhline(0, color="grey", linewidth=0.8)
            axis.set_title(f"{method}: per-language gain vs distance", fontsize=10)
            axis.set_xlabel("URIEL+ syntactic distance, source → target language")
            axis.set_ylabel("gain (points, seed mean)")
            axis.legend(fontsize=8)
        _save(figure, folder / SCATTER)
        drawn.append(SCATTER)
    differences = analysis.task_method_differences.dropna(subset=["gain_low_resource"])
    if len(differences):
        figure, axis = plt.subplots(figsize=(8, 1.5 + 0.5 * len(differences)), layout="constrained")
        labels = list(config_label(differences) + " × " + differences["target_task"])
        for offset, (kind, name) in enumerate((GAIN_KINDS[0], GAIN_KINDS[2])):
            positions = np.arange(len(differences)) + (offset - 0.5) * 0.3
            mean = differences[kind].to_numpy(dtype=float)
            errors = np.abs(np.vstack([differences[f"{kind}_ci_low"], differences[f"{kind}_ci_high"]]) - mean)
            axis.errorbar(mean, positions, xerr=np.nan_to_num(errors), fmt="o", capsize=3, label=name)
        axis.axvline(0, color="grey", linewidth=0.8)
        axis.set_yticks(range(len(differences)), labels, fontsize=8)
        axis.set_xlabel("difference from full fine-tuning after the same arm (points; 95% interval over seeds)")
        axis.legend(fontsize=8)
        _save(figure, folder / METHODS)
        drawn.append(METHODS)
    return drawn


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110)
    plt.close(figure)


def results_markdown(experiment: str, config_file: Path, config: dict, collected, analysis, settings, runs,
                     plan: str, journal: str, figures: dict[str, str], click_arguments: list[str]) -> str:
    from analysis.aggregate import config_label
    from analysis.report import pooled_labelled
    from analysis.summary import study_lines

    def pooled_label(row):
        return pooled_labelled(row.to_frame().T)["configuration"].iloc[0]

    main_runs = runs[runs["tags.xlt.phase"] == "main"].sort_values("start_time")
    nodes = sorted(set(runs["tags.xlt.node"].dropna())) if "tags.xlt.node" in runs else []
    gpu_runs = int(runs["metrics.peak_gpu_mb"].notna().sum()) if "metrics.peak_gpu_mb" in runs else 0
    commit = main_runs["tags.mlflow.source.git.commit"].dropna().iloc[-1] if len(main_runs) and \
        "tags.mlflow.source.git.commit" in main_runs else "unrecorded"
    commands = [f"mlflow run . -e main --env-manager local --experiment-name {experiment} "
                f"-P config={config_file.as_posix()}   # the grid (resumable: a rerun reuses finished steps)",
                f"MLFLOW_TRACKING_URI={_store_uri()} python -m analysis.results {' '.join(click_arguments)}"]
    if STUDY_SCRIPT.is_file() and config_file.as_posix() in STUDY_SCRIPT.read_text(encoding="utf-8"):
        commands.insert(0, f"bash {STUDY_SCRIPT}   # all of it: tune studies, plan, grid, this file")
    change_header = ["configuration", "target", *(name for _, name in GAIN_KINDS), "seeds", "distinguishable from 0"]
    sections = [
        f"# Results: {config.get('study', experiment)}",
        f"Written by `python -m analysis.results` (command below) from the tracking store `{_store_uri()}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: "
        f"{collected.status_counts.get('FINISHED', 0)} FINISHED evaluate runs, study code at commit `{commit}`. "
        "Do not edit by hand: rerun the command.",
        "## The question and the design",
        "From the header of `" + config_file.as_posix() + "` (the design and what was cut to fit 2 CPU cores):",
        "```text\n" + header_comment(config_file) + "\n```",
        f"Seeds {', '.join(str(seed) for seed in config['seeds'])}; averages over the "
        f"{len(settings.langs)} evaluated languages; low-resource set: {', '.join(sorted(set(settings.low_resource_langs) & set(settings.langs)))} "
        f"(`configs/low_resource_languages.yaml`). Definitions (seed pairing, bootstrap, Spearman): "
        "[docs/analysis.md](docs/analysis.md) and `analysis/aggregate.py`.",
        "## Commands",
        "```bash\n" + "\n".join(commands) + "\n```",
        "## Hardware and wall time",
        f"Runs recorded node(s) {', '.join(nodes) or 'unrecorded'}; this file was written on `{platform.node()}` "
        f"({_machine()}). Runs that logged GPU memory: {gpu_runs}.",
        markdown_table(["what", "wall time"], [list(row) for row in wall_times(runs)]),
        "The plan printed before the grid ran (`main -P plan=true`, estimated from the store's finished runs):",
        "```text\n" + (plan.strip() or "(no plan file given)") + "\n```",
        "Tuning (Optuna journal):",
        "\n".join(f"- {line}" for line in (study_lines(Path(journal)) if journal else ["no journal given"])),
        "## Main table",
        "Task average over the evaluated languages (mean ± std over seeds), without English, and over the "
        "low-resource set:",
        markdown_table(["configuration", "target", "metric", "all", "no English", "low-resource", "seeds"],
                       averages_rows(analysis.task_averages)),
        "## Gain over no intermediate task (95% bootstrap interval over seeds)",
        markdown_table(change_header, difference_rows(analysis.task_gains, config_label)),
        *_figure(figures, HEATMAP, "Per-language gain of each arm"),
        "## Source language: difference from the same intermediate task in English",
        markdown_table(change_header, difference_rows(analysis.task_source_differences, config_label)),
        "Spearman correlation of the per-language gain with the URIEL+ syntactic distance between the source "
        "language and the target language, per arm and with the source languages pooled:",
        markdown_table(["configuration", "target", "languages", "rho", "p", "note"],
                       correlation_rows(analysis.correlations, config_label)
                       + correlation_rows(pooled_over_sources(analysis), pooled_label)),
        *_figure(figures, SCATTER, "Gain vs distance"),
        "## Adapters vs full fine-tuning",
        markdown_table(change_header, difference_rows(analysis.task_method_differences, config_label)),
        *_figure(figures, METHODS, "Adapter methods minus full fine-tuning"),
        "## The answer, in plain words",
        "\n".join(answers(analysis)),
        "## What this scale can and cannot say",
        scale_caveats(config, settings),
        "## With the caps lifted on a GPU",
        ("No run in this store ran on a GPU (none logged `peak_gpu_mb`): no GPU machine was lent to the session "
         "that ran the study, so the caps-lifted run is not here." if not gpu_runs else
         f"{gpu_runs} runs in this store ran on a GPU: their rows are labelled by node above."),
        "## Notes from the analysis",
        "\n".join(f"- {note}" for note in analysis.notes) or "none",
    ]
    return "\n\n".join(sections) + "\n"


def _figure(figures: dict[str, str], name: str, caption: str) -> list[str]:
    return [f"![{caption}]({figures[name]})"] if name in figures else [f"({caption}: not drawn, no data.)"]


def scale_caveats(config: dict, settings) -> str:
    """What the study's scale allows, from its config: model, training caps, seeds, items per language."""
    from components.models import MODELS

    spec = MODELS.get(config["model"])
    model = spec.description if spec is not None and spec.description else config["model"]
    targets = config["targets"]
    arms = [arm for arm in config.get("intermediate") or [] if isinstance(arm, dict)]

    def most(entries, key):
        values = [entry[key] for entry in entries if key in entry]
        return f"{max(values):,}" if values else "uncapped"

    items = [(target.get("evaluate") or {}).get("max_eval_examples") for target in targets]
    return (f"The encoder is {model}. Targets train on at most {most(targets, 'max_train_examples')} English items "
            f"for at most {most(targets, 'epochs')} epoch(s), intermediate arms on at most "
            f"{most(arms, 'max_train_examples')} items; {len(config['seeds'])} seed(s); each of the "
            f"{len(settings.langs)} languages is scored on at most {max(value or 0 for value in items) or 'all'} items. "
            f"With {len(config['seeds'])} seeds a 95% percentile bootstrap interval spans most of the range of the "
            "per-seed differences, so only large, consistent differences are called distinguishable, and a "
            "difference that is not distinguishable is not evidence of no effect. Phang et al. (2020) train XLM-R "
            "Large (560M parameters) on full intermediate sets for several epochs; effects of a few points at that "
            "scale can be neither confirmed nor ruled out here, and a small encoder trained on a thousand items may "
            "react to intermediate training differently from a large one trained to convergence.")


def _store_uri() -> str:
    from components.tracking import default_tracking_uri

    return default_tracking_uri()


def _machine() -> str:
    import torch

    return (f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()

"""The analysis as files: CSV and Markdown tables, PNG figures, one self-contained HTML report, a terminal summary.

Writes under the output folder: `tables/<name>.md` (what the report shows) and `tables/<name>.csv` (all of it: the
report condenses per-language tables to language grids, left-out values to counts, coverage to incomplete cells),
`tables/tidy.csv` (the input), `figures/*.png` (gain heatmap, gain vs typological distance, low-resource bars; a
figure without data is not drawn and the report says why), `report.md` (figures linked) and `report.html` (figures
embedded as base64), and `ANALYSIS_RUN_ID`, which marks the folder as the analysis stage's (it is emptied on rerun).
The definitions in the report are the docstrings of `analysis.benchmark` and `analysis.aggregate`, so code and report
cannot disagree.
"""

import base64
import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import aggregate, benchmark  # noqa: E402
from analysis.aggregate import CONFIG, Analysis, Settings, config_label, intermediate_label  # noqa: E402
from analysis.collect import NO_INTERMEDIATE, Collected  # noqa: E402
from components.errors import XstiltsInputError  # noqa: E402

MARKER = "ANALYSIS_RUN_ID"
HEATMAP, SCATTER, BARS = "gain_heatmap.png", "gain_vs_distance.png", "low_resource_languages.png"
MAX_LABELLED_POINTS = 80
MAX_SUMMARY_ROWS = 20
MAX_BAR_CONFIGURATIONS = 12
MAX_ANNOTATED_ROWS = 60
NO_ROWS = "(no rows)"


@dataclass(frozen=True)
class Section:
    """One part of the report: prose, then an optional table and figure.

    Attributes:
        table: shown in the report and written as `tables/<csv>.md`; also `tables/<csv>.csv` unless `full_table`
            is given.
        full_table: the complete table behind a condensed `table` (a grid, counts): written as the CSV.
    """

    title: str
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    table: pd.DataFrame | None = None
    csv: str = ""
    full_table: pd.DataFrame | None = None
    figure: str = ""


def check_output_dir(folder: Path) -> None:
    """Refuses a folder that holds anything but an earlier analysis (it is emptied before writing)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir()) and not (folder / MARKER).is_file()):
        raise XstiltsInputError(f"output folder {folder} is not empty and was not written by the analysis stage "
                                f"(no {MARKER} file); expected a new or empty folder, or an earlier report's")


def prepare_output_dir(folder: Path) -> Path:
    """Empties `folder` when an earlier analysis wrote it, so that no stale figure survives."""
    check_output_dir(folder)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "figures").mkdir(parents=True)
    (folder / "tables").mkdir()
    return folder


def write_report(folder: Path, collected: Collected, analysis: Analysis, settings: Settings, distance: str,
                 run_id: str) -> None:
    """Writes every table, figure and both reports into `folder` (prepared by `prepare_output_dir`)."""
    (folder / MARKER).write_text(run_id + "\n", encoding="utf-8")
    figures = {HEATMAP: gain_heatmap(analysis.task_gains, folder / "figures" / HEATMAP),
               SCATTER: gain_vs_distance(analysis.language_gains, distance, folder / "figures" / SCATTER),
               BARS: low_resource_bars(analysis.per_language, settings.low_resource_langs,
                                       folder / "figures" / BARS)}
    sections = build_sections(collected, analysis, settings, distance, figures)
    collected.tidy.to_csv(folder / "tables" / "tidy.csv", index=False)
    for section in sections:
        if section.csv:
            full_table = section.table if section.full_table is None else section.full_table
            full_table.to_csv(folder / "tables" / f"{section.csv}.csv", index=False)
            (folder / "tables" / f"{section.csv}.md").write_text(markdown_table(section.table), encoding="utf-8")
    (folder / "report.md").write_text(markdown_report(sections, folder / "figures"), encoding="utf-8")
    (folder / "report.html").write_text(html_report(sections, folder / "figures"), encoding="utf-8")


def build_sections(collected: Collected, analysis: Analysis, settings: Settings, distance: str,
                   figures: dict[str, str]) -> list[Section]:
    """The report, in reading order; `figures` maps a figure name to its note ("" when drawn as described)."""
    ignored = ", ".join(f"{count} {status}" for status, count in collected.ignored_runs.items()) or "none"
    figure_notes = tuple(f"{name} {note}" for name, note in figures.items() if note)
    optimistic = f"Optimistic scores: {aggregate.optimistic_policy(settings.include_optimistic)}"
    return [
        Section("Source", (
            f"Runs: {collected.source}.",
            f"Analysed: {collected.status_counts.get('FINISHED', 0)} FINISHED evaluate runs. Ignored because not "
            f"FINISHED: {ignored}. Values left out: {len(collected.problems)} (table `excluded`).",
            f"Low-resource languages: {', '.join(settings.low_resource_langs)}. Typological distance: URIEL+ "
            f"{distance}. Bootstrap: {settings.n_resamples} resamples, seed {settings.bootstrap_seed}.",
            f"{optimistic}; {len(analysis.optimistic)} labelled (table `optimistic`).")),
        Section("Notes: flags and exclusions", bullets=analysis.notes + figure_notes or ("none",)),
        Section("Values left out", ("Counts by reason; every value is listed in `tables/excluded.csv`.",),
                table=collected.problems.groupby("reason").agg(values=("item", "size"), runs=("run_id", "nunique"),
                                                               example=("item", "first")).reset_index(),
                csv="excluded", full_table=collected.problems),
        Section("Task averages (main table)", ("avg / avg_no_en: mean over seeds of the per-seed average over the "
                                               "task's registry languages, with / without English.",),
                table=labelled(analysis.task_averages), csv="task_averages"),
        Section("XTREME-R and XTREME scores", ("qa_variant f1: QA tasks enter with F1 only; em_f1_mean: with "
                                               "(EM + F1) / 2. XCOPA is counted once, in classification.",
                                               f"{optimistic}; `optimistic` names them, `tasks` the tasks that "
                                               f"entered."),
                table=labelled(analysis.benchmark_scores), csv="benchmark_scores"),
        Section("Optimistic scores", ("Scores whose evaluate run logged why they are optimistic "
                                      "(`optimistic/<task>/<lang>`), by configuration, task and reason.",
                                      f"{optimistic}."),
                table=labelled(analysis.optimistic), csv="optimistic"),
        Section("Low-resource averages", table=labelled(analysis.low_resource), csv="low_resource"),
        Section("Gain over the no-intermediate baseline: task averages", table=labelled(analysis.task_gains),
                csv="gains_task", figure=HEATMAP),
        Section("Gain over the no-intermediate baseline: per language", (
            "Seed-mean gain; its std, 95% interval, seeds and typological distance: `tables/gains_language.csv`.",),
                table=language_grid(analysis.language_gains, "gain"), csv="gains_language",
                full_table=labelled(analysis.language_gains)),
        Section(f"Method comparison (e.g. MAD-X vs full fine-tuning): difference from method "
                f"`{aggregate.REFERENCE_METHOD}`, task averages",
                table=labelled(analysis.task_method_differences), csv="method_differences_task"),
        Section(f"Method comparison: difference from method `{aggregate.REFERENCE_METHOD}`, per language", (
            "Seed-mean difference; its std, 95% interval and seeds: `tables/method_differences_language.csv`.",),
                table=language_grid(analysis.language_method_differences, "gain"),
                csv="method_differences_language", full_table=labelled(analysis.language_method_differences)),
        Section("Source language: difference from the same intermediate task in English, task averages",
                table=labelled(analysis.task_source_differences), csv="source_differences_task"),
        Section("Gain vs typological distance", (f"Spearman rank correlation of per-language gain with the URIEL+ "
                                                 f"{distance} distance of the intermediate source language.",),
                table=labelled(analysis.correlations), csv="gain_distance_correlation", figure=SCATTER),
        Section("Gain vs typological distance, source languages pooled", (
            "The arms of one intermediate task in all its source languages together: one point per source and target "
            "language.",), table=pooled_labelled(analysis.pooled_correlations), csv="gain_distance_correlation_pooled"),
        Section("Per-language scores (mean over seeds)", ("Std and number of seeds of each value: "
                                                          "`tables/per_language.csv`.",),
                table=language_grid(analysis.per_language, "value"), csv="per_language",
                full_table=labelled(analysis.per_language), figure=BARS),
        Section("Incomplete cells", ("Cells lacking a seed or a language; every cell: `tables/coverage.csv`.",),
                table=labelled(analysis.coverage[~analysis.coverage["complete"]]), csv="coverage",
                full_table=labelled(analysis.coverage)),
        Section("Definitions", bullets=definitions()),
    ]


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with one readable `configuration` column in place of the four configuration columns."""
    named = frame.drop(columns=list(CONFIG))
    named.insert(0, "configuration", config_label(frame))
    return named


def pooled_labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of `aggregate.POOLED_CELL` rows with one readable `configuration` column (every source language)."""
    return labelled(frame.assign(intermediate_source_lang="*"))


def language_grid(per_language: pd.DataFrame, column: str) -> pd.DataFrame:
    """`column` of a per-language table with one column per language, after the rows' evaluation split(s) and, for
    a table with an `optimistic` column (the scores), the languages whose score is optimistic."""
    index = ["configuration", "target_task", "metric"]
    frame = labelled(per_language)
    grid = frame.pivot(index=index, columns="lang", values=column).reset_index().rename_axis(columns=None)
    labels = aggregate.split_labels(frame, index)
    if "optimistic" in frame:
        optimistic = frame[frame["optimistic"] != ""].groupby(index)["lang"].agg(",".join).rename("optimistic")
        labels = labels.merge(optimistic.reset_index(), on=index, how="left").fillna({"optimistic": ""})
    return labels.merge(grid, on=index)


def definitions() -> tuple[str, ...]:
    """The bullets of the benchmark and aggregate module docstrings, one string each."""
    bullets = []
    for doc in (benchmark.__doc__, aggregate.__doc__):
        for line in doc.splitlines():
            if line.startswith("- "):
                bullets.append(line[2:].strip())
            elif line.startswith("  ") and bullets:
                bullets[-1] += " " + line.strip()
    return tuple(bullets)


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text: numbers with two decimals (p-values with two significant digits), NaN empty."""
    text = frame.astype(object).map(lambda value: "" if pd.isna(value) else str(value))
    for column in frame.columns[[pd.api.types.is_float_dtype(dtype) for dtype in frame.dtypes]]:
        style = "{:.2g}" if column == "p_value" else "{:.2f}"
        text[column] = [style.format(value) if pd.notna(value) else "" for value in frame[column]]
    return text


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return f"{NO_ROWS}\n"
    cells = _cells(frame).map(lambda text: text.replace("|", "\\|"))
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return f"<p>{NO_ROWS}</p>"
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = ("<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in row) + "</tr>"
            for row in _cells(frame).itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def markdown_report(sections: list[Section], figures: Path) -> str:
    parts = ["# xstilts analysis\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        parts += [f"{paragraph}\n" for paragraph in section.paragraphs]
        if section.bullets:
            parts.append("".join(f"- {bullet}\n" for bullet in section.bullets))
        if section.table is not None:
            parts.append(markdown_table(section.table))
        if section.figure and (figures / section.figure).is_file():
            parts.append(f"![{section.figure}](figures/{section.figure})\n")
    return "\n".join(parts)


def html_report(sections: list[Section], figures: Path) -> str:
    body = []
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{_inline_html(paragraph)}</p>" for paragraph in section.paragraphs]
        if section.bullets:
            body.append("<ul>" + "".join(f"<li>{_inline_html(bullet)}</li>" for bullet in section.bullets) + "</ul>")
        if section.table is not None:
            body.append(html_table(section.table))
        if section.figure and (figures / section.figure).is_file():
            encoded = base64.b64encode((figures / section.figure).read_bytes()).decode("ascii")
            body.append(f'<img alt="{section.figure}" src="data:image/png;base64,{encoded}">')
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xstilts analysis</title><style>{style}</style>"
            f"</head><body><h1>xstilts analysis</h1>{''.join(body)}</body></html>\n")


def _inline_html(text: str) -> str:
    """Markdown's **bold** and `code` as HTML, everything else escaped."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _headline(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each task's headline score (F1 for QA tasks), the one figures show."""
    return frame[frame["metric"] == frame["target_task"].map(lambda task: benchmark.score_metric(task, "f1"))]


def gain_heatmap(task_gains: pd.DataFrame, path: Path) -> str:
    """Gain of the task average by intermediate task (rows) x target task (columns), one panel per method and model.

    Returns:
        a note for the report: "" when drawn as described, else why not (as every figure function).
    """
    gains = _headline(task_gains)
    if gains.empty:
        return "not drawn: no gain over a no-intermediate baseline could be computed (see the notes)"
    panels = [(key, rows.assign(intermediate=intermediate_label(rows)).pivot(
        index="intermediate", columns="target_task", values="gain"))
        for key, rows in gains.groupby(["method", "model"])]
    colours = plt.get_cmap("RdBu").with_extremes(bad="lightgrey")  # a missing gain must not look like 0 (white)
    figure, axes = plt.subplots(len(panels), 1, squeeze=False, layout="constrained",
                                height_ratios=[len(grid) + 2 for _, grid in panels],
                                # wide enough for the panel titles even with one target task
                                figsize=(max(7.0, 2 + 1.1 * gains["target_task"].nunique()),
                                         sum(1.5 + 0.3 * len(grid) for _, grid in panels)))
    for axis, ((method, model), grid) in zip(axes[:, 0], panels):
        limit = max(float(grid.abs().max().max()), 0.1)
        image = axis.imshow(grid.to_numpy(dtype=float), cmap=colours, vmin=-limit, vmax=limit, aspect="auto",
                            interpolation="nearest")
        if len(grid) <= MAX_ANNOTATED_ROWS:
            for (row, column), value in np.ndenumerate(grid.to_numpy(dtype=float)):
                axis.text(column, row, "n/a" if np.isnan(value) else f"{value:+.1f}", ha="center", va="center",
                          fontsize=9, color="white" if abs(value) > 0.6 * limit else "black")
        axis.set_xticks(range(len(grid.columns)), grid.columns)
        axis.set_yticks(range(len(grid.index)), grid.index)
        axis.set_title(f"{method} · {model}: gain of the task average (points; n/a: no complete cell or no "
                       f"baseline)", fontsize=10)
        figure.colorbar(image, ax=axis)
    _save(figure, path)
    return ""


def gain_vs_distance(language_gains: pd.DataFrame, distance: str, path: Path) -> str:
    """Per-language gain against the typological distance, one colour per target task."""
    points = _headline(language_gains).dropna(subset=["distance"])
    if points.empty:
        return "not drawn: no per-language gain with a typological distance (see the notes)"
    figure, axis = plt.subplots(figsize=(8, 5), layout="constrained")
    palette = plt.get_cmap("tab20").colors  # the default cycle repeats after 10 of the 12 target tasks
    for index, (task, rows) in enumerate(points.groupby("target_task")):
        axis.scatter(rows["distance"], rows["gain"], label=task, color=palette[index % len(palette)])
        if len(points) <= MAX_LABELLED_POINTS:
            for row in rows.itertuples():
                axis.annotate(row.lang, (row.distance, row.gain), fontsize=7, xytext=(2, 2),
                              textcoords="offset points")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlabel(f"URIEL+ {distance} distance, intermediate source language → target language")
    axis.set_ylabel("gain over no intermediate task (points)")
    axis.set_title("one point per configuration, target task and language (seed-mean gain)", fontsize=10)
    axis.legend(fontsize=8)
    _save(figure, path)
    return ""


def low_resource_bars(per_language: pd.DataFrame, low_resource_langs: tuple[str, ...], path: Path) -> str:
    """Seed-mean score (± std) per low-resource language, one bar per configuration, one panel per target task."""
    scores = _headline(per_language)
    scores = scores[scores["lang"].isin(low_resource_langs)]
    if scores.empty:
        return "not drawn: no score in a low-resource language"
    scores = scores.assign(configuration=config_label(scores), baseline=scores["intermediate_task"] == NO_INTERMEDIATE)
    ranking = scores.groupby("configuration").agg(baseline=("baseline", "all"), mean=("value", "mean"))
    configurations = sorted(ranking.sort_values(["baseline", "mean"], ascending=False).index[:MAX_BAR_CONFIGURATIONS])
    scores = scores[scores["configuration"].isin(configurations)]
    panels = list(scores.groupby("target_task"))
    figure, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(9, 1.5 + 3 * len(panels)),
                                layout="constrained")
    for axis, (task, rows) in zip(axes[:, 0], panels):
        # Every panel gets every configuration, so that a colour means the same configuration throughout.
        means = rows.pivot(index="lang", columns="configuration", values="value").reindex(columns=configurations)
        spreads = rows.pivot(index="lang", columns="configuration", values="value_std").reindex(
            columns=configurations).fillna(0)
        means.plot.bar(ax=axis, yerr=spreads, capsize=2, rot=0, legend=False)
        axis.set_title(f"{task}: {rows['metric'].iloc[0]} in low-resource languages (mean ± std over seeds)",
                       fontsize=10)
        axis.set_xlabel("")
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    _save(figure, path)
    if len(ranking) <= MAX_BAR_CONFIGURATIONS:
        return ""
    return (f"shows {MAX_BAR_CONFIGURATIONS} of {len(ranking)} configurations: the no-intermediate baselines, then "
            f"the best mean over the low-resource languages shown (every value: tables/per_language.csv)")


def _save(figure, path: Path) -> None:
    figure.savefig(path, dpi=110)
    plt.close(figure)


HEADLINE_COLUMNS = (("task_averages", aggregate.AVERAGE_COLUMNS), ("task_gains", aggregate.GAIN_COLUMNS))


def metric_safe(label: str) -> str:
    """A configuration label in the characters MLflow metric keys allow (letters, digits, `_ - . : space /`), without
    `/` (which would open a chart section): `full · xlm-roberta-base · anli(en)` -> `full : xlm-roberta-base :
    anli-en`."""
    return re.sub(r"[^\w.\- :]", "_", label.replace(" · ", " : ").replace("(", "-").replace(")", ""))


def headline_metrics(analysis: Analysis) -> dict[str, float]:
    """The study's headline numbers as metrics of the analysis run: per configuration and target task, on the task's
    score metric, the task average with and without English and over the low-resource languages (`avg`, `avg_no_en`,
    `avg_low_resource`, mean over seeds) and its gain over the no-intermediate baseline (`gain`, `gain_no_en`,
    `gain_low_resource`); keys `<name>/<task>/<configuration>` (`metric_safe`).
    Values that could not be computed (incomplete cells, no baseline) are left out."""
    metrics = {}
    for table, columns in HEADLINE_COLUMNS:
        for _, row in _headline(getattr(analysis, table)).iterrows():
            for column in columns:
                if pd.notna(row[column]):
                    metrics[f"{column}/{row['target_task']}/{metric_safe(config_label(row))}"] = float(row[column])
    return metrics


def summary(collected: Collected, analysis: Analysis, folder: Path, run_id: str) -> str:
    """A few lines for the terminal: what was read, the main table, the overall scores, the notes."""
    ignored = ", ".join(f"{count} {status}" for status, count in collected.ignored_runs.items()) or "none"
    overall = analysis.benchmark_scores[analysis.benchmark_scores["group"] == "overall"]
    lines = [f"analysed {collected.status_counts.get('FINISHED', 0)} FINISHED evaluate runs; ignored (not "
             f"FINISHED): {ignored}; values left out: {len(collected.problems)}",
             "task averages (main table):",
             labelled(analysis.task_averages).drop(columns="note").to_string(index=False, float_format="{:.2f}".format),
             "per-language scores (mean over seeds):",
             language_grid(_headline(analysis.per_language), "value").head(MAX_SUMMARY_ROWS).to_string(
                 index=False, float_format="{:.1f}".format),
             "overall scores:",
             labelled(overall)[["configuration", "benchmark", "qa_variant", "score", "score_std", "n_seeds",
                                "optimistic", "note"]]
             .to_string(index=False, float_format="{:.2f}".format),
             f"notes ({len(analysis.notes)}):", *[f"  - {note}" for note in analysis.notes[:MAX_SUMMARY_ROWS]]]
    if len(analysis.notes) > MAX_SUMMARY_ROWS:
        lines.append(f"  ... {len(analysis.notes) - MAX_SUMMARY_ROWS} more in the report")
    lines.append(f"report: {folder / 'report.html'} (+ report.md, tables/, figures/); analysis run {run_id}")
    return "\n".join(lines)

"""Pure functions: the tidy table -> scores, averages, gains, intervals and correlations (no MLflow, no files).

Definitions (the report states the same):

- **Configuration**: (method, model, intermediate task, intermediate source language); `intermediate_task = none` is
  the no-intermediate baseline. **Cell**: a configuration x target task x score metric (see `benchmark`).
- **Per-language score**: mean over seeds of a value; std over seeds (sample std, ddof=1; empty with one seed).
  Seed `none` marks a deterministic run (retrieval straight from an encoder): it counts as one seed. A configuration
  whose runs of one target task have both seed `none` and numbered seeds (e.g. an untrained encoder and the encoder
  of a seeded `target` run, which share the configuration's params) holds two different models: that task's values
  of the configuration are refused (no score, average or gain), and a note names the seeds.
- **Evaluation split**: every score names the split it was scored on (`eval_split`: `test`, or `dev` where the
  benchmark's test labels are not available for that language; `a+b` where runs of one configuration differ;
  `unrecorded` for runs older than the `eval_split` param). A task whose languages were scored on different splits is
  marked `mixed: <split of most languages>, <other split> in <its languages>` in the task tables, and noted: its
  averages mix the splits. Gains pair a language's scores only when both were scored on the same split.
- **Optimistic score**: a value whose evaluate run logged why it is optimistic (`optimistic/<task>/<lang>`: BUCC's F1
  on the dev gold its threshold was tuned on; under the standard and target-dev protocols, an English score on the
  English dev split the model was selected on). Its reason is shown (`optimistic`) in the per-language scores and
  the task averages, which keep it, and listed in the report. The benchmark scores leave it out unless
  `include_optimistic` (`--include-optimistic`) is set: a task enters with its average over its other languages, and
  a task with no other language (BUCC) is left out of its group and the overall score; their `optimistic` column
  names what was left out (or included), and `tasks` the tasks that entered.
- **Complete cell**: every expected seed has a value in every language of the task's list. Expected seeds: every
  seed that runs of the same method, model and target task have, in any configuration (`none` only for a cell whose
  runs are all deterministic). An incomplete cell is flagged, with what it lacks, and enters no average: an average is
  never taken over fewer languages or seeds than it is defined on.
- **Task average**: per seed, the plain mean over the task's registry languages, with English and without English;
  then mean and std over seeds.
- **Benchmark scores** (`benchmark.XTREME_R`, `benchmark.XTREME`): a group score is the mean of its tasks' averages
  (each the mean over its seeds) and the overall score the mean over all the benchmark's tasks (unweighted, as the
  official `all_task`), each in both QA variants. The std over seeds is that of the per-seed scores when every task
  involved has the same seeds. When they differ, the score is the mean of the tasks' seed means, without a std, and
  the note names each seed that some tasks lack (`seed 3 missing in xnli, panx`) and the deterministic tasks
  (`tatoeba deterministic (seed none)`). Computed only when every task involved is complete.
- **Low-resource average**: per seed, the mean over the task's languages that are in the low-resource list; complete
  cells only. The task averages, gains and differences carry it as `avg_low_resource` / `gain_low_resource`.
- **Gain over the baseline**: per seed, configuration minus the no-intermediate run of the same method (for
  `adapter_stilts` and `full_then_madx`, which start from an intermediate run: `madx`) and model
  (paired by seed: the seed fixes the target phase's initialisation and data order; a deterministic run, seed `none`,
  pairs with every seed), per language and for the task averages; then mean, std and a 95% bootstrap interval over
  seeds. **Method difference**: the same with
  "full fine-tuning of the same model and intermediate configuration" as the reference. **Source-language
  difference**: the same with "the same intermediate task, method and model, trained in English" as the reference
  (`udpos(ja)` minus `udpos(en)`).
- **Bootstrap interval**: percentile 95% interval of the mean of the per-seed gains (in seed order) over
  `n_resamples` resamples of the seeds with replacement (numpy `default_rng(bootstrap_seed)`, the same draw for every
  gain with the same number of seeds; `bootstrap_intervals` gives the exact formula); none with one seed.
- **Gain vs distance**: Spearman rank correlation between the per-language gain (seed mean) and the typological
  distance of the intermediate source language to the language, per cell, over the languages with a distance; only
  with at least `MIN_CORRELATION_POINTS` points. **Pooled**: the same over the arms of one intermediate task in all
  its source languages together (one point per source language and target language), so that the source language
  varies the distance.
"""

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.benchmark import (BENCHMARKS, EM_F1_MEAN, ENGLISH, QA_VARIANTS, REGISTRY_LANGS, Benchmark, is_qa,
                                score_metric, score_metrics)
from analysis.collect import CONFIG, NO_INTERMEDIATE
from components.tasks import TASKS

CELL = (*CONFIG, "target_task", "metric")
POOLED_CELL = tuple(column for column in CELL if column != "intermediate_source_lang")
NO_SEED = "none"
REFERENCE_METHOD = "full"
MIN_CORRELATION_POINTS = 5
COVERAGE_COLUMNS = (*CELL, "n_langs", "n_seeds", "complete", "missing_langs", "missing_seeds", "note")
BENCHMARK_COLUMNS = (*CONFIG, "benchmark", "group", "qa_variant", "score", "score_std", "n_seeds", "tasks",
                     "optimistic", "note")
OPTIMISTIC_COLUMNS = (*CONFIG, "target_task", "langs", "optimistic")
_SCORE_KEYS = {f"{task}/{metric}" for task in TASKS for metric in score_metrics(task)}


@dataclass(frozen=True)
class Settings:
    """Analysis choices: the low-resource languages and the bootstrap's size and seed."""

    low_resource_langs: tuple[str, ...]
    n_resamples: int = 10_000
    bootstrap_seed: int = 0
    # A study evaluated on some languages only (the demo): averages and completeness over each task's languages among
    # these. Empty = every language of the registry (the benchmarks' definitions).
    langs: tuple[str, ...] = ()
    # Optimistic scores (see the module docstring) enter the benchmark scores only when asked for.
    include_optimistic: bool = False

    def langs_by_task(self) -> dict[str, tuple[str, ...]]:
        if not self.langs:
            return REGISTRY_LANGS
        return {task: tuple(lang for lang in langs if lang in self.langs) for task, langs in REGISTRY_LANGS.items()}


@dataclass(frozen=True)
class Comparison:
    """A paired comparison: rows whose `column` is `reference` against the rows that match them on `match`."""

    name: str
    column: str
    reference: str
    match: tuple[str, ...]


INTERMEDIATE_GAIN = Comparison("gain over the no-intermediate baseline", "intermediate_task", NO_INTERMEDIATE,
                               ("baseline_method", "model"))
# The method without an intermediate task that a method after one is compared with: an adapter method that starts
# from an intermediate run has MAD-X as its no-intermediate counterpart (every other method is its own).
NO_INTERMEDIATE_COUNTERPART = {"adapter_stilts": "madx", "full_then_madx": "madx"}
METHOD_DIFFERENCE = Comparison("difference from full fine-tuning", "method", REFERENCE_METHOD,
                               ("model", "intermediate_task", "intermediate_source_lang"))
SOURCE_LANGUAGE_DIFFERENCE = Comparison("difference from the same intermediate task in English",
                                        "intermediate_source_lang", ENGLISH, ("method", "model", "intermediate_task"))
AVERAGE_COLUMNS = ("avg", "avg_no_en", "avg_low_resource")
GAIN_COLUMNS = ("gain", "gain_no_en", "gain_low_resource")


@dataclass(frozen=True)
class Analysis:
    """Every table of the report (see the module docstring for definitions) and the notes on what was left out."""

    per_language: pd.DataFrame
    coverage: pd.DataFrame
    task_averages: pd.DataFrame
    benchmark_scores: pd.DataFrame
    low_resource: pd.DataFrame
    language_gains: pd.DataFrame
    task_gains: pd.DataFrame
    language_method_differences: pd.DataFrame
    task_method_differences: pd.DataFrame
    task_source_differences: pd.DataFrame
    correlations: pd.DataFrame
    pooled_correlations: pd.DataFrame
    optimistic: pd.DataFrame
    notes: tuple[str, ...]


def analyse(tidy: pd.DataFrame, distances: pd.DataFrame, settings: Settings) -> Analysis:
    """All tables from the tidy table and the source-target distances (`typology.DISTANCE_COLUMNS`)."""
    values, refused = without_mixed_seeds(with_language_labels(with_em_f1(tidy)))
    scores = score_table(values)
    per_language = over_seeds(values, [*CELL, "lang", "eval_split", "optimistic"], ["value"])
    task_splits = split_labels(per_language, list(CELL))
    scope = settings.langs_by_task()
    labels = optimistic_labels(values)
    optimistic = optimistic_table(labels)
    coverage = cell_coverage(scores, scope)
    per_seed = task_average_per_seed(scores, coverage, scope, settings.low_resource_langs)
    by_language = scores.rename(columns={"value": "gain"})
    by_task = per_seed.rename(columns=dict(zip(AVERAGE_COLUMNS, GAIN_COLUMNS)))
    language_gains = with_distance(gains(by_language, ["gain"], settings), distances)
    configs = scores[list(CONFIG)].drop_duplicates()
    notes = (*refused, *coverage.loc[~coverage["complete"], "note"], *optimistic_notes(optimistic, settings),
             *comparison_notes(with_baseline_method(configs), INTERMEDIATE_GAIN),
             *comparison_notes(configs, METHOD_DIFFERENCE),
             *comparison_notes(configs[configs["intermediate_task"] != NO_INTERMEDIATE], SOURCE_LANGUAGE_DIFFERENCE),
             *split_notes(task_splits), *split_mismatch_notes(with_baseline_method(scores), INTERMEDIATE_GAIN),
             *split_mismatch_notes(scores, METHOD_DIFFERENCE), *distance_notes(distances))
    return Analysis(
        per_language=per_language,
        coverage=coverage,
        task_averages=task_averages(per_seed, coverage, task_splits, labels, scope),
        benchmark_scores=pd.concat([benchmark_scores(scores, benchmark, labels, settings.include_optimistic)
                                    for benchmark in BENCHMARKS], ignore_index=True),
        low_resource=low_resource_averages(scores, coverage, settings.low_resource_langs, scope),
        language_gains=language_gains,
        task_gains=gains(by_task, list(GAIN_COLUMNS), settings),
        language_method_differences=compare(by_language, ["gain"], METHOD_DIFFERENCE, settings),
        task_method_differences=compare(by_task, list(GAIN_COLUMNS), METHOD_DIFFERENCE, settings),
        task_source_differences=compare(by_task, list(GAIN_COLUMNS), SOURCE_LANGUAGE_DIFFERENCE, settings),
        correlations=distance_correlations(language_gains, CELL),
        pooled_correlations=distance_correlations(language_gains, POOLED_CELL),
        optimistic=optimistic,
        notes=notes,
    )


def with_baseline_method(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the `baseline_method` its rows' gains over no intermediate task are paired on."""
    return frame.assign(baseline_method=frame["method"].map(lambda method: NO_INTERMEDIATE_COUNTERPART.get(method,
                                                                                                           method)))


def gains(frame: pd.DataFrame, columns: list[str], settings: Settings) -> pd.DataFrame:
    """The gains over the no-intermediate baseline of the same model and counterpart method (`with_baseline_method`:
    adapter_stilts after an arm against MAD-X without one)."""
    return compare(with_baseline_method(frame), columns, INTERMEDIATE_GAIN, settings).drop(columns="baseline_method")


def intermediate_label(row):
    """`task(source language)`, e.g. `anli(en)`, or `none`; `row` is a mapping of strings or a DataFrame (labels)."""
    return row["intermediate_task"] + ("(" + row["intermediate_source_lang"] + ")").replace("()", "")


def config_label(row):
    """`method · model · intermediate(source)`, e.g. `full · xlm-roberta-base · anli(en)`; works like
    `intermediate_label`."""
    return row["method"] + " · " + row["model"] + " · " + intermediate_label(row)


def with_em_f1(tidy: pd.DataFrame) -> pd.DataFrame:
    """The tidy values plus, for QA tasks, an `em_f1_mean` = (exact_match + f1) / 2 value per run and language."""
    keys = ["run_id", *CONFIG, "target_task", "seed", "lang", "eval_split", "optimistic"]
    qa = tidy[tidy["target_task"].map(is_qa)]
    both = qa[qa["metric"] == "f1"].merge(qa[qa["metric"] == "exact_match"], on=keys, suffixes=("", "_em"))
    em_f1 = both[keys].assign(metric=EM_F1_MEAN, value=(both["value"] + both["value_em"]) / 2)
    return pd.concat([tidy[[*keys, "metric", "value"]], em_f1], ignore_index=True)


def with_language_labels(values: pd.DataFrame) -> pd.DataFrame:
    """`values` with one `eval_split` and one `optimistic` per configuration, task and language (so that each
    per-language score has one label): its runs' split, or their splits joined by `+` where runs differ; the reasons
    any of its runs gave for being optimistic, joined by `; ` ("" when none did)."""
    return values.assign(eval_split=_per_language(values, "eval_split", "+"),
                         optimistic=_per_language(values, "optimistic", "; ", ignored=""))


def _per_language(values: pd.DataFrame, column: str, separator: str, ignored: str | None = None) -> np.ndarray:
    """For each row of `values`, the distinct `column` values (but `ignored`) of its configuration, task and language,
    sorted and joined by `separator` ("" when none)."""
    keys = [*CONFIG, "target_task", "lang"]
    distinct = values.loc[values[column] != ignored, [*keys, column]].drop_duplicates().sort_values(column)
    several = distinct.duplicated(keys, keep=False)  # rare: only these need a join
    joined = distinct[several].groupby(keys, as_index=False)[column].agg(separator.join)
    labels = pd.concat([distinct[~several], joined], ignore_index=True)
    return values[keys].merge(labels, on=keys, how="left")[column].fillna("").to_numpy()


def without_mixed_seeds(values: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`values` without the configurations' target tasks whose runs have both seed `none` and numbered seeds (two
    different models under one configuration), and a note for each."""
    keys = [*CONFIG, "target_task"]
    seeds = values.groupby(keys)["seed"].agg(set)
    mixed = seeds[seeds.map(lambda found: NO_SEED in found and len(found) > 1)]
    notes = [f"{config_label(dict(zip(keys, key)))} × {key[-1]}: runs with seed {NO_SEED} (deterministic, e.g. "
             f"retrieval straight from an encoder) and with seed(s) {', '.join(sorted(found - {NO_SEED}))}: two "
             f"different models under one configuration: refused, in no score, average or gain (tell them apart "
             f"with tags or parent_run_id)"
             for key, found in mixed.items()]
    return values[~pd.MultiIndex.from_frame(values[keys]).isin(mixed.index)], notes


def optimistic_labels(values: pd.DataFrame) -> pd.DataFrame:
    """The optimistic (configuration, task, language) scores with their reason (see `with_language_labels`)."""
    labelled = values[values["optimistic"] != ""]
    return labelled[[*CONFIG, "target_task", "lang", "optimistic"]].drop_duplicates().reset_index(drop=True)


def optimistic_table(labels: pd.DataFrame) -> pd.DataFrame:
    """`OPTIMISTIC_COLUMNS`: per configuration, task and reason, the languages it labels (comma-separated)."""
    grouped = labels.groupby([*CONFIG, "target_task", "optimistic"], sort=True)["lang"]
    return grouped.agg(lambda langs: ",".join(sorted(langs))).rename("langs").reset_index()[list(OPTIMISTIC_COLUMNS)]


def optimistic_policy(include_optimistic: bool) -> str:
    """What the benchmark scores do with the optimistic scores, in words."""
    if include_optimistic:
        return "included in the benchmark scores (include_optimistic)"
    return "left out of the benchmark scores (include_optimistic keeps them)"


def optimistic_notes(optimistic: pd.DataFrame, settings: Settings) -> list[str]:
    return [f"{config_label(row)} × {row['target_task']}: optimistic in {row['langs']} ({row['optimistic']}): "
            f"labelled; {optimistic_policy(settings.include_optimistic)}" for _, row in optimistic.iterrows()]


def _within(labels: pd.DataFrame, langs_by_task: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    return labels.merge(_language_scope(langs_by_task), on=["target_task", "lang"])


def split_label(langs_by_split: dict[str, list[str]]) -> str:
    """One split's name, or `mixed: <split of most languages>, <other split> in <its languages>; ...`."""
    if len(langs_by_split) == 1:
        return next(iter(langs_by_split))
    main, *others = sorted(langs_by_split, key=lambda split: (-len(langs_by_split[split]), split))
    return f"mixed: {main}, " + "; ".join(f"{split} in {','.join(langs_by_split[split])}" for split in others)


def split_labels(per_language: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per `by` group of per-language rows (`lang`, `eval_split`): the evaluation split(s) of its languages."""
    langs = per_language.groupby([*by, "eval_split"], sort=True)["lang"].agg(lambda group: sorted(set(group)))
    rows = [(*key, split_label(dict(zip(group.index.get_level_values("eval_split"), group))))
            for key, group in langs.groupby(level=by, sort=True)]
    return pd.DataFrame(rows, columns=[*by, "eval_split"])


def split_notes(task_splits: pd.DataFrame) -> list[str]:
    """A note per task whose scores are not all on the test or all on the dev split (`split_labels` per cell)."""
    labels = task_splits.loc[~task_splits["eval_split"].isin(("test", "dev")), ["target_task", "eval_split"]]
    return [f"{task}: evaluation split {label}: a per-language score compares only with scores on the same split, "
            f"and the task's averages mix the splits"
            for task, label in labels.drop_duplicates().itertuples(index=False)]


def split_mismatch_notes(scores: pd.DataFrame, comparison: Comparison) -> list[str]:
    """Languages without a paired difference because a configuration and its reference were scored on different
    evaluation splits."""
    splits = scores[list(dict.fromkeys([*CONFIG, *comparison.match, "target_task", "lang", "eval_split"]))]
    splits = splits.drop_duplicates()
    is_reference = splits[comparison.column] == comparison.reference
    keys = [*comparison.match, "target_task", "lang"]
    paired = splits[~is_reference].merge(splits.loc[is_reference, [*keys, "eval_split"]], on=keys,
                                         suffixes=("", "_reference"))
    mismatched = paired[paired["eval_split"] != paired["eval_split_reference"]]
    return [f"{config_label(row)} × {row['target_task']}: no {comparison.name} in {row['lang']}: scored on another "
            f"evaluation split than the reference"
            for _, row in mismatched.groupby([*CONFIG, "target_task"])["lang"].agg(",".join).reset_index().iterrows()]


def score_table(values: pd.DataFrame) -> pd.DataFrame:
    """The values of the metrics averages are taken over (`benchmark.score_metrics`)."""
    wanted = (values["target_task"] + "/" + values["metric"]).isin(_SCORE_KEYS)
    return values.loc[wanted, [*CELL, "seed", "lang", "eval_split", "value"]]


def over_seeds(frame: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean (`<column>`), sample std (`<column>_std`) and the number of seeds, per `by` group."""
    statistics = {}
    for column in columns:
        statistics[column] = (column, "mean")
        statistics[f"{column}_std"] = (column, "std")
    return frame.groupby(by, sort=True).agg(**statistics, n_seeds=("seed", "nunique")).reset_index()


def cell_coverage(scores: pd.DataFrame, langs_by_task: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """One row per cell of a task in `langs_by_task`: what it lacks of the expected seeds and languages.

    Returns:
        `COVERAGE_COLUMNS`; `note` says what is missing and that the cell enters no average.
    """
    scores = scores[scores["target_task"].isin(langs_by_task)]
    in_scope = scores.merge(_language_scope(langs_by_task), on=["target_task", "lang"])
    cells = scores.groupby(list(CELL), sort=True)["seed"].agg(set).rename("seeds").reset_index()
    cells = cells.merge(in_scope.groupby(list(CELL)).size().rename("pairs").reset_index(), on=list(CELL), how="left")
    cells["n_seeds"] = cells["seeds"].map(len)
    cells["n_langs"] = cells["target_task"].map({task: len(langs) for task, langs in langs_by_task.items()})
    study = ["method", "model", "target_task", "metric"]
    seeded = cells.assign(seeds=cells["seeds"].map(lambda seeds: seeds - {NO_SEED})).groupby(study)["seeds"].agg(
        lambda sets: set().union(*sets))
    cells["expected_seeds"] = [{NO_SEED} if seeds == {NO_SEED} else seeded[key]
                               for seeds, key in zip(cells["seeds"], zip(*(cells[column] for column in study)))]
    # Values are unique per cell, seed and language, so a cell is complete when it has every expected pair.
    cells["complete"] = cells["pairs"] == cells["n_langs"] * cells["expected_seeds"].map(len)
    cells["missing_langs"] = cells["missing_seeds"] = cells["note"] = ""
    incomplete = cells[~cells["complete"]]
    groups = dict(list(in_scope.merge(incomplete[list(CELL)], on=list(CELL)).groupby(list(CELL))))
    for index, row in incomplete.iterrows():
        group = groups.get(tuple(row[list(CELL)]), in_scope.iloc[:0])
        langs_by_seed = group.groupby("seed")["lang"].agg(set)
        missing_seeds = sorted(row["expected_seeds"] - set(langs_by_seed.index))
        missing_langs = [lang for lang in langs_by_task[row["target_task"]]
                         if any(lang not in present for present in langs_by_seed)]
        lacks = [f"{label} {', '.join(items)}" for label, items in
                 (("missing languages", missing_langs), ("missing seeds", missing_seeds)) if items]
        cells.loc[index, ["missing_langs", "missing_seeds", "note"]] = [
            ",".join(missing_langs), ",".join(missing_seeds),
            f"{config_label(row)} × {row['target_task']} ({row['metric']}): {'; '.join(lacks)}: excluded from every "
            f"average"]
    return cells[list(COVERAGE_COLUMNS)]


def _language_scope(langs_by_task: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    return pd.DataFrame([(task, lang) for task, langs in langs_by_task.items() for lang in langs],
                        columns=["target_task", "lang"])


def task_average_per_seed(scores: pd.DataFrame, coverage: pd.DataFrame, langs_by_task: dict[str, tuple[str, ...]],
                          low_resource_langs: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per complete cell and seed: `avg` over the languages of `langs_by_task`, `avg_no_en` without English, and
    `avg_low_resource` over those in `low_resource_langs` (NaN for a task with none of them)."""
    complete = coverage.loc[coverage["complete"], list(CELL)]
    frame = scores.merge(_language_scope(langs_by_task), on=["target_task", "lang"]).merge(complete, on=list(CELL))
    keys = [*CELL, "seed"]
    averages = frame.groupby(keys)["value"].mean().rename("avg").to_frame()
    averages["avg_no_en"] = frame[frame["lang"] != ENGLISH].groupby(keys)["value"].mean()
    averages["avg_low_resource"] = frame[frame["lang"].isin(low_resource_langs)].groupby(keys)["value"].mean()
    return averages.reset_index()


def task_averages(per_seed: pd.DataFrame, coverage: pd.DataFrame, task_splits: pd.DataFrame, labels: pd.DataFrame,
                  langs_by_task: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Every cell: its evaluation split(s) (`split_labels`), its optimistic languages with their reasons
    (`<langs>: <reason>; ...` over the languages of `langs_by_task`), task average with and without English over
    seeds, or empty values and the coverage note."""
    summary = over_seeds(per_seed, list(CELL), list(AVERAGE_COLUMNS)).drop(columns="n_seeds")
    task = [*CONFIG, "target_task"]
    in_scope = optimistic_table(_within(labels, langs_by_task))
    reasons = (in_scope["langs"] + ": " + in_scope["optimistic"]).groupby([in_scope[key] for key in task]).agg(
        "; ".join).rename("optimistic").reset_index()
    cells = coverage[[*CELL, "n_langs", "n_seeds", "note"]].merge(task_splits, on=list(CELL), how="left")
    cells = cells.merge(reasons, on=task, how="left").fillna({"optimistic": ""})
    return cells.merge(summary, on=list(CELL), how="left")


def benchmark_scores(scores: pd.DataFrame, benchmark: Benchmark, labels: pd.DataFrame,
                     include_optimistic: bool = False) -> pd.DataFrame:
    """Group and overall scores of `benchmark` per configuration, in both QA variants, the optimistic scores (`labels`)
    left out unless `include_optimistic` (see the module docstring)."""
    coverage = cell_coverage(scores, benchmark.langs)
    flagged = _within(labels, benchmark.langs)
    trusted = scores
    if not include_optimistic:
        keys = [*CONFIG, "target_task", "lang"]
        trusted = scores[~pd.MultiIndex.from_frame(scores[keys]).isin(pd.MultiIndex.from_frame(flagged[keys]))]
    per_seed = task_average_per_seed(trusted, coverage, benchmark.langs)
    optimistic_langs: dict[tuple, dict[str, list[str]]] = {}
    for *config, task, lang in flagged[[*CONFIG, "target_task", "lang"]].sort_values("lang").itertuples(index=False):
        optimistic_langs.setdefault(tuple(config), {}).setdefault(task, []).append(lang)
    # Plain dicts (configuration -> task -> seed -> task average): thousands of small groups cost little this way.
    averages: dict[str, dict[tuple, dict[str, dict[str, float]]]] = {variant: {} for variant in QA_VARIANTS}
    for variant, by_config in averages.items():
        chosen = per_seed[per_seed["metric"] == per_seed["target_task"].map(lambda task: score_metric(task, variant))]
        for *config, task, seed, average in chosen[[*CONFIG, "target_task", "seed", "avg"]].itertuples(index=False):
            by_config.setdefault(tuple(config), {}).setdefault(task, {})[seed] = average
    rows = []
    for config in coverage[list(CONFIG)].drop_duplicates().itertuples(index=False):
        for variant, by_config in averages.items():
            for group, tasks in [*benchmark.groups.items(), ("overall", benchmark.tasks)]:
                rows.append({**config._asdict(), "benchmark": benchmark.name, "group": group, "qa_variant": variant,
                             **_group_score(by_config.get(tuple(config), {}),
                                            {task: benchmark.langs[task] for task in tasks},
                                            optimistic_langs.get(tuple(config), {}), include_optimistic)})
    return pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS)).astype({"n_seeds": "Int64"})


def _group_score(averages: dict[str, dict[str, float]], langs_by_task: dict[str, tuple[str, ...]],
                 optimistic_langs: dict[str, list[str]], include_optimistic: bool) -> dict:
    """Score, std, seeds, tasks, optimistic languages and note of one task group of a configuration, from its task
    averages (task -> seed -> average, without the optimistic values unless `include_optimistic`)."""
    flagged = [f"{task} {','.join(optimistic_langs[task])}" for task in langs_by_task if task in optimistic_langs]
    left_out = [] if include_optimistic else [task for task, langs in langs_by_task.items()
                                              if set(langs) <= set(optimistic_langs.get(task, ()))]
    used = [task for task in langs_by_task if task not in left_out]
    row = {"score": np.nan, "score_std": np.nan, "n_seeds": pd.NA, "tasks": ",".join(used),
           "optimistic": f"{'included' if include_optimistic else 'left out'}: {'; '.join(flagged)}" if flagged
           else "", "note": ""}
    seeds = {task: set(averages.get(task, {})) for task in used}
    missing = [task for task in used if not seeds[task]]
    if not used:
        row["note"] = "not computed: every task's scores are optimistic (include_optimistic keeps them)"
    elif missing:
        row["note"] = f"not computed: no run or no complete cell for {', '.join(missing)}"
    elif len({frozenset(found) for found in seeds.values()}) == 1:
        # Every task has every seed: the per-seed scores exist, and their spread is the score's.
        per_seed = [np.mean([averages[task][seed] for task in used]) for seed in seeds[used[0]]]
        row.update(score=np.mean(per_seed), score_std=np.std(per_seed, ddof=1) if len(per_seed) > 1 else np.nan,
                   n_seeds=len(per_seed))
    else:
        row.update(score=np.mean([np.mean(list(averages[task].values())) for task in used]),
                   note=f"its tasks have different seeds: mean of their seed means, no std ({_seed_gaps(seeds)})")
    return row


def _seed_gaps(seeds: dict[str, set[str]]) -> str:
    """`seed 3 missing in xnli, panx; tatoeba deterministic (seed none)`: per numbered seed, the tasks that lack it."""
    deterministic = [task for task, found in seeds.items() if found == {NO_SEED}]
    numbered = sorted(set().union(*seeds.values()) - {NO_SEED}, key=lambda seed: (len(seed), seed))
    gaps = [f"seed {seed} missing in {', '.join(lacking)}" for seed in numbered
            if (lacking := [task for task, found in seeds.items() if seed not in found and task not in deterministic])]
    if deterministic:
        gaps.append(f"{', '.join(deterministic)} deterministic (seed {NO_SEED})")
    return "; ".join(gaps)


def low_resource_averages(scores: pd.DataFrame, coverage: pd.DataFrame, low_resource_langs: tuple[str, ...],
                          scope: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Per cell of a task with low-resource languages in `scope` (a task's languages): their average over seeds, or
    the coverage note."""
    langs_by_task = {task: tuple(lang for lang in langs if lang in low_resource_langs) for task, langs in scope.items()}
    langs_by_task = {task: langs for task, langs in langs_by_task.items() if langs}
    summary = over_seeds(task_average_per_seed(scores, coverage, langs_by_task), list(CELL), ["avg"])
    cells = coverage.loc[coverage["target_task"].isin(langs_by_task), [*CELL, "note"]]
    cells.insert(len(CELL), "low_resource_langs", cells["target_task"].map(lambda task: ",".join(langs_by_task[task])))
    return cells.merge(summary, on=list(CELL), how="left")


def bootstrap_intervals(samples: list[np.ndarray], n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95% interval of the mean of each sample (per-seed gains, in seed order), by bootstrap.

    For a sample `values` of size n >= 2 the interval is exactly
    `np.percentile(values[indices].mean(axis=1), [2.5, 97.5])` with
    `indices = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))`: the same draw for every sample of
    size n. It is computed over the distinct resamples (at most 126 for 5 seeds) and how often each was drawn, so
    that thousands of gains cost little. Samples of fewer than two values get NaN.

    Returns:
        (lower bounds, upper bounds), one per sample.
    """
    low, high = np.full(len(samples), np.nan), np.full(len(samples), np.nan)
    sizes = np.array([len(sample) for sample in samples])
    for size in np.unique(sizes[sizes >= 2]):
        rows = np.flatnonzero(sizes == size)
        weights, frequency = _distinct_resamples(int(size), n_resamples, seed)
        means = np.stack([samples[row] for row in rows]) @ weights.T
        order = np.argsort(means, axis=1, kind="stable")
        sorted_means = np.take_along_axis(means, order, axis=1)
        cumulative = np.cumsum(frequency[order], axis=1)
        for bounds, quantile in ((low, 0.025), (high, 0.975)):
            position = quantile * (n_resamples - 1)  # numpy's default "linear" percentile
            below = int(np.floor(position))
            lower, upper = (np.take_along_axis(sorted_means, (cumulative > rank).argmax(axis=1)[:, None], axis=1)[:, 0]
                            for rank in (below, min(below + 1, n_resamples - 1)))
            bounds[rows] = lower + (position - below) * (upper - lower)
    return low, high


@functools.cache
def _distinct_resamples(size: int, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct resamples of `size` values as mean weights (count / size) and how often each was drawn."""
    indices = np.random.default_rng(seed).integers(0, size, size=(n_resamples, size))
    counts = np.zeros((n_resamples, size))
    np.add.at(counts, (np.arange(n_resamples)[:, None], indices), 1)
    distinct, frequency = np.unique(counts, axis=0, return_counts=True)
    return distinct / size, frequency


def paired_differences(frame: pd.DataFrame, columns: list[str], comparison: Comparison) -> pd.DataFrame:
    """Per seed, each non-reference row's `columns` minus those of the reference row it matches.

    `frame` holds `CONFIG`, `columns`, `seed` and key columns (task, metric, language); rows pair on the key columns,
    `comparison.match` and the seed, where a deterministic row (seed `none`) pairs with every seed.
    """
    keys = [column for column in frame.columns if column not in (*CONFIG, *columns, "seed")]
    is_reference = frame[comparison.column] == comparison.reference
    on = list(dict.fromkeys([*comparison.match, *keys]))
    reference = frame.loc[is_reference, [*on, "seed", *columns]]
    paired = frame[~is_reference].merge(reference, on=on, suffixes=("", "_reference"))
    seed, reference_seed = paired["seed"], paired.pop("seed_reference")
    pairs = (seed == reference_seed) | (seed == NO_SEED) | (reference_seed == NO_SEED)
    paired = paired[pairs].assign(seed=seed.where(seed != NO_SEED, reference_seed)[pairs])
    for column in columns:
        paired[column] = paired[column] - paired.pop(f"{column}_reference")
    return paired


def compare(frame: pd.DataFrame, columns: list[str], comparison: Comparison, settings: Settings) -> pd.DataFrame:
    """Paired differences summarised over seeds: mean, std, 95% bootstrap interval (`<column>_ci_low/high`)."""
    differences = paired_differences(frame, columns, comparison).sort_values("seed", kind="stable")
    by = [column for column in differences.columns if column not in (*columns, "seed")]
    summary = over_seeds(differences, by, columns)
    for column in columns:
        samples = [np.asarray(sample) for sample in differences.groupby(by, sort=True)[column].agg(list)]
        summary[f"{column}_ci_low"], summary[f"{column}_ci_high"] = bootstrap_intervals(
            samples, settings.n_resamples, settings.bootstrap_seed)
    summary["note"] = np.where(summary["n_seeds"] < 2, "1 seed: no std, no interval", "")
    return summary


def comparison_notes(configs: pd.DataFrame, comparison: Comparison) -> list[str]:
    """Why configurations get no row in a comparison: no reference run at all, or none that matches them."""
    is_reference = configs[comparison.column] == comparison.reference
    if is_reference.all():
        return [f"every run has {comparison.column} = {comparison.reference}: no {comparison.name}"]
    references = configs.loc[is_reference, list(comparison.match)].drop_duplicates()
    unmatched = configs[~is_reference].merge(references, on=list(comparison.match), how="left", indicator=True)
    return [f"{config_label(row)}: no run with {comparison.column} = {comparison.reference} and the same "
            f"{', '.join(comparison.match)}, so no {comparison.name}"
            for _, row in unmatched[unmatched["_merge"] == "left_only"].iterrows()]


def with_distance(language_gains: pd.DataFrame, distances: pd.DataFrame) -> pd.DataFrame:
    """Per-language gains with the distance of the intermediate source language to the language (NaN + note if none)."""
    merged = language_gains.merge(distances.rename(columns={"source_lang": "intermediate_source_lang"}),
                                  on=["intermediate_source_lang", "lang"], how="left")
    merged.loc[merged["intermediate_source_lang"] == "", "distance_note"] = "no intermediate source language"
    return merged


def distance_notes(distances: pd.DataFrame) -> list[str]:
    return [f"no typological distance for {row.source_lang} -> {row.lang}: {row.distance_note}"
            for row in distances[distances["distance"].isna()].itertuples()]


def distance_correlations(language_gains: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Per group of `by` (`CELL`: per configuration; `POOLED_CELL`: the arms of one intermediate task in all its
    source languages together): Spearman's rho (and its p-value) between per-language gain and distance, with n and a
    note."""
    located = language_gains.dropna(subset=["distance"])
    points_by_cell = dict(list(located.groupby(list(by))))
    rows = []
    for cell, n_gains in language_gains.groupby(list(by), sort=True).size().items():
        points = points_by_cell.get(cell, located.iloc[:0])
        row = {**dict(zip(by, cell)), "n": len(points), "n_without_distance": n_gains - len(points),
               "spearman_rho": float("nan"), "p_value": float("nan"), "note": ""}
        if len(points) < MIN_CORRELATION_POINTS:
            row["note"] = f"{len(points)} languages with a distance: fewer than {MIN_CORRELATION_POINTS}, not computed"
        elif points["distance"].nunique() < 2 or points["gain"].nunique() < 2:
            row["note"] = "gain or distance is constant: no rank correlation"
        else:
            result = spearmanr(points["distance"], points["gain"])
            row["spearman_rho"], row["p_value"] = float(result.statistic), float(result.pvalue)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "n", "n_without_distance", "spearman_rho", "p_value", "note"])


def source_target_pairs(tidy: pd.DataFrame) -> list[tuple[str, str]]:
    """The (intermediate source language, target language) pairs a gain can be computed for."""
    treated = tidy[(tidy["intermediate_task"] != NO_INTERMEDIATE) & (tidy["intermediate_source_lang"] != "")]
    return sorted(set(zip(treated["intermediate_source_lang"], treated["lang"])))

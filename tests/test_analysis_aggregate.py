"""The analysis arithmetic on hand-made tidy tables; every expected number is worked out here, by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import aggregate, report
from analysis.aggregate import Settings, analyse, bootstrap_intervals
from analysis.collect import TIDY_COLUMNS
from components.tasks import TASKS

XNLI = TASKS["xnli"].langs  # 15 languages, en among them
NO_DISTANCES = pd.DataFrame(columns=["source_lang", "lang", "distance", "distance_note"])
SETTINGS = Settings(low_resource_langs=("sw", "ur", "yo"), n_resamples=10_000, bootstrap_seed=0)


def values(task, by_lang, seed="1", metric=None, intermediate="none", source="", method="full", model="m",
           dev_langs=(), optimistic=None):
    """Tidy rows of one run: `by_lang` maps language -> value; `dev_langs` were scored on dev, the others on test;
    `optimistic` maps a language to the reason its run logged for the score being optimistic."""
    return [dict(run_id=f"{method}-{intermediate}-{task}-{seed}", parent_run_id="", experiment_id="1", method=method,
                 model=model, intermediate_task=intermediate, intermediate_source_lang=source, target_task=task,
                 seed=seed, lang=lang, eval_split="dev" if lang in dev_langs else "test",
                 optimistic=(optimistic or {}).get(lang, ""), metric=metric or TASKS[task].headline_metric,
                 value=float(value))
            for lang, value in by_lang.items()]


def every_lang(task, value, **overrides):
    return {**dict.fromkeys(TASKS[task].langs, value), **overrides}


def tidy(*runs):
    return pd.DataFrame([row for run in runs for row in run], columns=list(TIDY_COLUMNS))


def row(table, **where):
    """The single row of `table` matching `where` (a one-line lookup with a clear failure)."""
    selected = table
    for column, value in where.items():
        selected = selected[selected[column] == value]
    assert len(selected) == 1, f"{len(selected)} rows match {where}"
    return selected.iloc[0]


def test_task_average_with_and_without_english_over_seeds():
    table = tidy(values("xnli", every_lang("xnli", 60, en=90, de=75), seed="1"),
                 values("xnli", every_lang("xnli", 62, en=92), seed="2"))
    averages = analyse(table, NO_DISTANCES, SETTINGS).task_averages
    seed1_all, seed1_no_en = (90 + 75 + 13 * 60) / 15, (75 + 13 * 60) / 14
    seed2_all, seed2_no_en = (92 + 14 * 62) / 15, 62.0
    xnli = row(averages, target_task="xnli")
    assert xnli["avg"] == pytest.approx((seed1_all + seed2_all) / 2)
    assert xnli["avg_std"] == pytest.approx(abs(seed1_all - seed2_all) / math.sqrt(2))  # sample std of two values
    assert xnli["avg_no_en"] == pytest.approx((seed1_no_en + seed2_no_en) / 2)
    assert xnli["avg_no_en_std"] == pytest.approx(abs(seed1_no_en - seed2_no_en) / math.sqrt(2))
    assert (xnli["n_seeds"], xnli["n_langs"], xnli["note"]) == (2, 15, "")


def test_missing_language_or_seed_flags_the_cell_and_keeps_it_out_of_every_average():
    complete = [values("xnli", every_lang("xnli", 60), seed=seed) for seed in ("1", "2")]
    no_sw = {lang: 70 for lang in XNLI if lang != "sw"}
    table = tidy(*complete,
                 values("xnli", no_sw, seed="1", intermediate="anli", source="en"),
                 values("xnli", every_lang("xnli", 70), seed="2", intermediate="anli", source="en"),
                 values("xnli", every_lang("xnli", 65), seed="1", intermediate="squad", source="en"))
    analysis = analyse(table, NO_DISTANCES, SETTINGS)
    anli = row(analysis.task_averages, intermediate_task="anli")
    squad = row(analysis.task_averages, intermediate_task="squad")
    assert math.isnan(anli["avg"]) and "missing languages sw" in anli["note"]
    assert math.isnan(squad["avg"]) and "missing seeds 2" in squad["note"]
    assert row(analysis.coverage, intermediate_task="anli")["missing_langs"] == "sw"
    assert not analysis.coverage.set_index("intermediate_task").loc[["anli", "squad"], "complete"].any()
    assert sum("excluded from every average" in note for note in analysis.notes) == 2
    assert analysis.task_gains.empty  # neither incomplete cell has a task-average gain
    assert math.isnan(row(analysis.low_resource, intermediate_task="anli")["avg"])
    de_gain = row(analysis.language_gains, intermediate_task="anli", lang="de")
    assert (de_gain["gain"], de_gain["n_seeds"]) == (pytest.approx((70 - 60 + 70 - 60) / 2), 2)


def xtreme_r_and_xtreme_runs(seed="1", xnli=70):
    """One seed of every XTREME-R and XTREME task; per task one value in every language, except where noted."""
    v1_udpos = {lang: 80 for lang in TASKS["udpos"].langs if lang not in {"lt", "pl", "uk", "wo", "ro"}}
    constant = {"xnli": xnli, "xcopa": 60, "panx": 50, "mewslix": 30, "lareqa": 20, "tatoeba": 40, "pawsx": 90,
                "bucc2018": 10}
    qa = {"xquad": (70, 60), "mlqa": (60, 40), "tydiqa": (50, 30)}  # (f1, exact match)
    return [values("udpos", {**v1_udpos, "lt": 0, "pl": 0, "uk": 0, "wo": 0, "ro": 0}, seed=seed),
            *[values(task, every_lang(task, value), seed=seed) for task, value in constant.items()],
            *[values(task, every_lang(task, f1), seed=seed, metric="f1") for task, (f1, _) in qa.items()],
            *[values(task, every_lang(task, em), seed=seed, metric="exact_match") for task, (_, em) in qa.items()]]


def test_xtreme_r_and_xtreme_group_and_overall_scores():
    scores = analyse(tidy(*xtreme_r_and_xtreme_runs()), NO_DISTANCES, SETTINGS).benchmark_scores
    udpos_r = (33 * 80 + 5 * 0) / 38  # XTREME-R averages udpos over 38 languages; XTREME over its 33
    expected = {
        ("XTREME-R", "f1"): {"classification": (70 + 60) / 2, "tagging": (udpos_r + 50) / 2,
                             "qa": (70 + 60 + 50) / 3, "retrieval": (30 + 20 + 40) / 3,
                             "overall": (70 + 60 + udpos_r + 50 + 70 + 60 + 50 + 30 + 20 + 40) / 10},
        ("XTREME-R", "em_f1_mean"): {"qa": ((70 + 60) / 2 + (60 + 40) / 2 + (50 + 30) / 2) / 3,
                                     "overall": (70 + 60 + udpos_r + 50 + 65 + 50 + 40 + 30 + 20 + 40) / 10},
        ("XTREME", "f1"): {"classification": (70 + 90) / 2, "tagging": (80 + 50) / 2, "retrieval": (40 + 10) / 2,
                           "overall": (70 + 90 + 80 + 50 + 70 + 60 + 50 + 40 + 10) / 9},
        ("XTREME", "em_f1_mean"): {"qa": (65 + 50 + 40) / 3,
                                   "overall": (70 + 90 + 80 + 50 + 65 + 50 + 40 + 40 + 10) / 9},
    }
    for (benchmark, variant), groups in expected.items():
        for group, score in groups.items():
            found = row(scores, benchmark=benchmark, qa_variant=variant, group=group)
            assert found["score"] == pytest.approx(score), (benchmark, variant, group)
            assert found["n_seeds"] == 1 and found["note"] == ""
    assert row(scores, benchmark="XTREME-R", qa_variant="f1", group="overall")["tasks"].split(",").count("xcopa") == 1


def test_benchmark_score_needs_every_task():
    runs = [run for run in xtreme_r_and_xtreme_runs() if run[0]["target_task"] != "lareqa"]
    scores = analyse(tidy(*runs), NO_DISTANCES, SETTINGS).benchmark_scores
    overall = row(scores, benchmark="XTREME-R", qa_variant="f1", group="overall")
    assert math.isnan(overall["score"]) and "lareqa" in overall["note"]
    assert row(scores, benchmark="XTREME-R", qa_variant="f1", group="qa")["score"] == pytest.approx(60)
    assert row(scores, benchmark="XTREME", qa_variant="f1", group="overall")["note"] == ""


def test_a_deterministic_task_enters_by_its_single_value_and_the_std_is_left_out():
    runs = [run for seed, xnli in (("1", 70), ("2", 72)) for run in xtreme_r_and_xtreme_runs(seed, xnli)
            if run[0]["target_task"] != "tatoeba"]
    runs.append(values("tatoeba", every_lang("tatoeba", 40), seed="none"))  # retrieval straight from the encoder
    scores = analyse(tidy(*runs), NO_DISTANCES, SETTINGS).benchmark_scores
    udpos_r = (33 * 80 + 5 * 0) / 38
    overall = row(scores, benchmark="XTREME-R", qa_variant="f1", group="overall")
    assert overall["score"] == pytest.approx(((70 + 72) / 2 + 60 + udpos_r + 50 + 70 + 60 + 50 + 30 + 20 + 40) / 10)
    assert math.isnan(overall["score_std"]) and "different seeds" in overall["note"]
    classification = row(scores, benchmark="XTREME-R", qa_variant="f1", group="classification")
    per_seed = [(70 + 60) / 2, (72 + 60) / 2]
    assert classification["score"] == pytest.approx(sum(per_seed) / 2)
    assert classification["score_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / math.sqrt(2))
    assert classification["n_seeds"] == 2 and classification["note"] == ""


def test_a_deterministic_baseline_pairs_with_every_seed():
    runs = [values("tatoeba", every_lang("tatoeba", 40), seed="none"),
            values("tatoeba", every_lang("tatoeba", 42), seed="1", intermediate="anli", source="en"),
            values("tatoeba", every_lang("tatoeba", 44), seed="2", intermediate="anli", source="en")]
    analysis = analyse(tidy(*runs), NO_DISTANCES, SETTINGS)
    assert analysis.coverage["complete"].all()
    gain = row(analysis.task_gains, target_task="tatoeba")
    assert (gain["gain"], gain["n_seeds"]) == (pytest.approx((42 - 40 + 44 - 40) / 2), 2)


def test_low_resource_average_over_the_listed_languages_of_each_task():
    analysis = analyse(tidy(values("xnli", every_lang("xnli", 70, sw=40, ur=50))), NO_DISTANCES, SETTINGS)
    xnli = row(analysis.low_resource, target_task="xnli")
    assert xnli["avg"] == pytest.approx((40 + 50) / 2)  # yo is listed but not an XNLI language
    assert xnli["low_resource_langs"] == "sw,ur"


def three_seed_gain_runs(anli_values, baseline_values=(60, 61, 62), de_values=None):
    """Baseline (no intermediate) and anli(en) on XNLI, seeds 1-3, one value in every language per seed."""
    runs = []
    for index, seed in enumerate(("1", "2", "3")):
        runs.append(values("xnli", every_lang("xnli", baseline_values[index]), seed=seed))
        overrides = {"de": de_values[index]} if de_values else {}
        runs.append(values("xnli", every_lang("xnli", anli_values[index], **overrides), seed=seed,
                           intermediate="anli", source="en"))
    return runs


def test_gain_over_the_baseline_with_seed_std_and_bootstrap_interval():
    analysis = analyse(tidy(*three_seed_gain_runs((62, 64, 63), de_values=(70, 70, 70))), NO_DISTANCES, SETTINGS)
    gains = np.array([(14 * 62 + 70) / 15 - 60, (14 * 64 + 70) / 15 - 61, (14 * 63 + 70) / 15 - 62])
    mean = gains.sum() / 3
    std = math.sqrt(sum((gain - mean) ** 2 for gain in gains) / (3 - 1))
    indices = np.random.default_rng(0).integers(0, 3, size=(10_000, 3))  # the documented resampling
    low, high = np.percentile(gains[indices].mean(axis=1), [2.5, 97.5])
    task = row(analysis.task_gains, target_task="xnli")
    assert (task["gain"], task["gain_std"]) == (pytest.approx(mean), pytest.approx(std))
    assert (task["gain_ci_low"], task["gain_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert task["gain_no_en"] == pytest.approx(((13 * 62 + 70) / 14 - 60 + (13 * 64 + 70) / 14 - 61
                                                + (13 * 63 + 70) / 14 - 62) / 3)
    assert low <= mean <= high and task["n_seeds"] == 3
    de = row(analysis.language_gains, lang="de")
    assert (de["gain"], de["gain_std"]) == (pytest.approx((10 + 9 + 8) / 3), pytest.approx(1.0))
    fr = row(analysis.language_gains, lang="fr")
    assert fr["gain"] == pytest.approx((2 + 3 + 1) / 3)


def test_equal_gains_give_an_exact_interval_and_one_seed_gives_none():
    analysis = analyse(tidy(*three_seed_gain_runs((62, 63, 64), baseline_values=(60, 61, 62))), NO_DISTANCES,
                       SETTINGS)
    task = row(analysis.task_gains, target_task="xnli")
    assert (task["gain"], task["gain_ci_low"], task["gain_ci_high"]) == (pytest.approx(2), pytest.approx(2),
                                                                          pytest.approx(2))
    single = analyse(tidy(*three_seed_gain_runs((62, 63, 64))[:2]), NO_DISTANCES, SETTINGS)
    task = row(single.task_gains, target_task="xnli")
    assert task["gain"] == pytest.approx(2) and task["n_seeds"] == 1
    assert math.isnan(task["gain_std"]) and math.isnan(task["gain_ci_low"]) and math.isnan(task["gain_ci_high"])
    assert task["note"] == "1 seed: no std, no interval"


def test_bootstrap_intervals_match_numpy_for_every_sample_size():
    samples = [np.array([3.0]), np.array([1.0, 4.0]), np.array([2.0, 7.0, 1.0, 8.0, 2.5]), np.array([5.0, 6.0])]
    low, high = bootstrap_intervals(samples, 2000, 7)
    assert math.isnan(low[0]) and math.isnan(high[0])
    for sample, found in zip(samples[1:], zip(low[1:], high[1:])):
        indices = np.random.default_rng(7).integers(0, len(sample), size=(2000, len(sample)))
        assert found == pytest.approx(tuple(np.percentile(sample[indices].mean(axis=1), [2.5, 97.5])))


def test_method_difference_and_a_single_method():
    full = values("xnli", every_lang("xnli", 60))
    madx = values("xnli", every_lang("xnli", 65), method="madx")
    analysis = analyse(tidy(full, madx), NO_DISTANCES, SETTINGS)
    difference = row(analysis.task_method_differences, method="madx", target_task="xnli")
    assert difference["gain"] == pytest.approx(65 - 60)
    assert row(analysis.language_method_differences, method="madx", lang="sw")["gain"] == pytest.approx(5)
    only_full = analyse(tidy(full), NO_DISTANCES, SETTINGS)
    assert only_full.task_method_differences.empty
    assert "every run has method = full: no difference from full fine-tuning" in only_full.notes


def test_no_baseline_is_said_not_crashed():
    analysis = analyse(tidy(values("xnli", every_lang("xnli", 60), intermediate="anli", source="en")),
                       NO_DISTANCES, SETTINGS)
    assert analysis.task_gains.empty and analysis.language_gains.empty
    assert any("no run with intermediate_task = none" in note for note in analysis.notes)


def gain_runs_for_correlation():
    """One seed; the anli(en) gain is 1, 2, 3, 5, 4 points in de, fr, es, ru, ar and 0 elsewhere."""
    return (values("xnli", every_lang("xnli", 60)),
            values("xnli", every_lang("xnli", 60, de=61, fr=62, es=63, ru=65, ar=64), intermediate="anli",
                   source="en"))


def distances(by_lang):
    return pd.DataFrame([("en", lang, by_lang.get(lang, float("nan")), "" if lang in by_lang else "no URIEL+ entry")
                         for lang in XNLI], columns=["source_lang", "lang", "distance", "distance_note"])


def test_spearman_correlation_of_gain_with_distance():
    by_lang = {"de": 0.1, "fr": 0.2, "es": 0.3, "ru": 0.4, "ar": 0.5}
    analysis = analyse(tidy(*gain_runs_for_correlation()), distances(by_lang), SETTINGS)
    correlation = row(analysis.correlations, target_task="xnli")
    rank_differences = [1 - 1, 2 - 2, 3 - 3, 4 - 5, 5 - 4]  # distance rank - gain rank: de fr es ru ar
    n = 5
    rho = 1 - 6 * sum(d * d for d in rank_differences) / (n * (n * n - 1))  # = 0.9
    assert correlation["spearman_rho"] == pytest.approx(rho)
    assert (correlation["n"], correlation["n_without_distance"]) == (5, 10)
    assert any("no typological distance for en -> sw" in note for note in analysis.notes)


def test_too_few_points_give_no_correlation():
    analysis = analyse(tidy(*gain_runs_for_correlation()), distances({"de": 0.1, "fr": 0.2, "es": 0.3}), SETTINGS)
    correlation = row(analysis.correlations, target_task="xnli")
    assert math.isnan(correlation["spearman_rho"]) and correlation["n"] == 3
    assert "fewer than 5" in correlation["note"]


def test_source_target_pairs_skip_the_baseline():
    table = tidy(*gain_runs_for_correlation())
    assert aggregate.source_target_pairs(table) == sorted(("en", lang) for lang in XNLI)


UDPOS_DEV = tuple("ar de en es fi fr hi id it ja ko pl pt ru tr zh".split())  # dev only in the bundle (its README)


def test_scores_carry_their_split_and_a_task_mixing_splits_is_marked():
    baseline = values("udpos", every_lang("udpos", 60), dev_langs=UDPOS_DEV)
    # The configuration scored wo on dev, its baseline on test: their wo scores are not paired.
    treated = values("udpos", every_lang("udpos", 65), intermediate="anli", source="en", dev_langs=(*UDPOS_DEV, "wo"))
    analysis = analyse(tidy(baseline, treated, values("xnli", every_lang("xnli", 70))), NO_DISTANCES, SETTINGS)
    assert row(analysis.per_language, target_task="udpos", intermediate_task="none", lang="ja")["eval_split"] == "dev"
    assert row(analysis.per_language, target_task="udpos", intermediate_task="none", lang="wo")["eval_split"] == "test"
    mixed = "mixed: test, dev in " + ",".join(UDPOS_DEV)
    assert row(analysis.task_averages, target_task="udpos", intermediate_task="none")["eval_split"] == mixed
    assert row(analysis.task_averages, target_task="xnli")["eval_split"] == "test"
    assert f"udpos: evaluation split {mixed}: a per-language score compares only with scores on the same split, " \
           "and the task's averages mix the splits" in analysis.notes
    gains = analysis.language_gains[analysis.language_gains["target_task"] == "udpos"]
    assert "wo" not in set(gains["lang"]) and len(gains) == len(TASKS["udpos"].langs) - 1
    assert row(gains, lang="ja")["eval_split"] == "dev" and row(gains, lang="et")["eval_split"] == "test"
    assert "full · m · anli(en) × udpos: no gain over the no-intermediate baseline in wo: scored on another " \
           "evaluation split than the reference" in analysis.notes
    grid = report.language_grid(analysis.per_language, "value")
    assert list(grid.columns[:4]) == ["configuration", "target_task", "metric", "eval_split"]
    assert row(grid, configuration="full · m · none", target_task="udpos")["eval_split"] == mixed


def test_seeds_scored_on_different_splits_label_the_language_with_both():
    table = tidy(values("xnli", every_lang("xnli", 60), seed="1"),
                 values("xnli", every_lang("xnli", 62), seed="2", dev_langs=("sw",)))
    analysis = analyse(table, NO_DISTANCES, SETTINGS)
    assert row(analysis.per_language, lang="sw")["eval_split"] == "dev+test"
    assert row(analysis.task_averages, target_task="xnli")["eval_split"] == "mixed: test, dev+test in sw"


def test_a_language_scope_averages_a_subset_study_over_its_languages():
    """The demo evaluates en/de/sw (XNLI) and en/de/ja (PAN-X): with that scope both cells are complete; without it
    they lack languages and enter no average."""
    table = tidy(values("xnli", {"en": 80, "de": 70, "sw": 40}), values("panx", {"en": 90, "de": 60, "ja": 9}))
    scoped = Settings(low_resource_langs=("sw", "ur"), langs=("en", "de", "sw", "ja", "yo"))  # ur: out of scope
    averages = analyse(table, NO_DISTANCES, scoped).task_averages
    xnli, panx = row(averages, target_task="xnli"), row(averages, target_task="panx")
    assert (xnli["avg"], xnli["avg_no_en"], xnli["n_langs"]) == (pytest.approx(190 / 3), pytest.approx(55.0), 3)
    # PAN-X has yo too: the cell misses it under this scope.
    assert math.isnan(panx["avg"]) and "yo" in row(analyse(table, NO_DISTANCES, scoped).coverage,
                                                   target_task="panx")["missing_langs"]
    assert analyse(table, NO_DISTANCES, SETTINGS).task_averages["avg"].isna().all()
    low = row(analyse(table, NO_DISTANCES, scoped).low_resource, target_task="xnli")
    assert (low["low_resource_langs"], low["avg"]) == ("sw", pytest.approx(40.0))


IN_SAMPLE = "in-sample: F1 on the dev gold that the threshold was tuned on"
SELECTION_SET = "English dev split is also the selection set"
XTREME_WITHOUT_BUCC = {"classification": (70 + 90) / 2, "tagging": (80 + 50) / 2, "qa": (70 + 60 + 50) / 3,
                       "retrieval": 40}  # the f1 variant of `xtreme_r_and_xtreme_runs`, tatoeba alone in retrieval


def runs_with_in_sample_bucc():
    """`xtreme_r_and_xtreme_runs`, its BUCC scores (10 in de, fr, ru, zh) marked in-sample by their run."""
    runs = [run for run in xtreme_r_and_xtreme_runs() if run[0]["target_task"] != "bucc2018"]
    bucc = TASKS["bucc2018"].langs
    return [*runs, values("bucc2018", every_lang("bucc2018", 10), optimistic=dict.fromkeys(bucc, IN_SAMPLE))]


def test_in_sample_bucc_is_left_out_of_the_xtreme_scores_unless_asked_for():
    analysis = analyse(tidy(*runs_with_in_sample_bucc()), NO_DISTANCES, SETTINGS)
    scores = analysis.benchmark_scores
    retrieval = row(scores, benchmark="XTREME", qa_variant="f1", group="retrieval")
    assert retrieval["score"] == pytest.approx(40)  # tatoeba alone
    assert (retrieval["tasks"], retrieval["optimistic"], retrieval["note"]) == (
        "tatoeba", "left out: bucc2018 de,fr,ru,zh", "")
    overall = row(scores, benchmark="XTREME", qa_variant="f1", group="overall")
    assert overall["score"] == pytest.approx((70 + 90 + 80 + 50 + 70 + 60 + 50 + 40) / 8)
    assert "bucc2018" not in overall["tasks"].split(",") and overall["optimistic"] == "left out: bucc2018 de,fr,ru,zh"
    assert row(scores, benchmark="XTREME", qa_variant="f1", group="tagging")["optimistic"] == ""
    assert row(scores, benchmark="XTREME-R", qa_variant="f1", group="overall")["score"] == pytest.approx(
        (70 + 60 + (33 * 80 + 5 * 0) / 38 + 50 + 70 + 60 + 50 + 30 + 20 + 40) / 10)  # XTREME-R has no BUCC
    # Labelled, not dropped, everywhere else: the per-language scores and BUCC's own task average.
    assert row(analysis.per_language, target_task="bucc2018", lang="zh")["optimistic"] == IN_SAMPLE
    assert row(analysis.per_language, target_task="xnli", lang="de")["optimistic"] == ""
    bucc = row(analysis.task_averages, target_task="bucc2018")
    assert (bucc["avg"], bucc["optimistic"]) == (pytest.approx(10), f"de,fr,ru,zh: {IN_SAMPLE}")
    assert row(analysis.optimistic, target_task="bucc2018")["langs"] == "de,fr,ru,zh"
    assert f"full · m · none × bucc2018: optimistic in de,fr,ru,zh ({IN_SAMPLE}): labelled; left out of the " \
           "benchmark scores (include_optimistic keeps them)" in analysis.notes

    included = analyse(tidy(*runs_with_in_sample_bucc()), NO_DISTANCES,
                       Settings(low_resource_langs=("sw",), include_optimistic=True)).benchmark_scores
    retrieval = row(included, benchmark="XTREME", qa_variant="f1", group="retrieval")
    assert retrieval["score"] == pytest.approx((40 + 10) / 2)
    assert (retrieval["tasks"], retrieval["optimistic"]) == ("tatoeba,bucc2018", "included: bucc2018 de,fr,ru,zh")
    assert row(included, benchmark="XTREME", qa_variant="f1", group="overall")["score"] == pytest.approx(
        (70 + 90 + 80 + 50 + 70 + 60 + 50 + 40 + 10) / 9)


def test_an_optimistic_english_score_leaves_its_task_averaged_over_the_other_languages():
    """PAN-X under target-dev: English is scored on its selection set (95 there, 50 in the other 47 languages)."""
    runs = [run for run in xtreme_r_and_xtreme_runs() if run[0]["target_task"] != "panx"]
    runs.append(values("panx", every_lang("panx", 50, en=95), optimistic={"en": SELECTION_SET}))
    udpos_r = (33 * 80 + 5 * 0) / 38
    with_english = (47 * 50 + 95) / 48
    for include, panx_score, label in ((False, 50, "left out: panx en"), (True, with_english, "included: panx en")):
        analysis = analyse(tidy(*runs), NO_DISTANCES, Settings(low_resource_langs=("sw",), include_optimistic=include))
        tagging = row(analysis.benchmark_scores, benchmark="XTREME-R", qa_variant="f1", group="tagging")
        assert tagging["score"] == pytest.approx((udpos_r + panx_score) / 2), include
        assert (tagging["tasks"], tagging["optimistic"]) == ("udpos,panx", label)
        panx = row(analysis.task_averages, target_task="panx")  # the task average keeps English either way
        assert (panx["avg"], panx["avg_no_en"]) == (pytest.approx(with_english), pytest.approx(50))
        assert panx["optimistic"] == f"en: {SELECTION_SET}"


def test_a_group_whose_every_score_is_optimistic_is_not_computed():
    bucc = TASKS["bucc2018"].langs
    runs = [values("bucc2018", every_lang("bucc2018", 10), optimistic=dict.fromkeys(bucc, IN_SAMPLE)),
            values("tatoeba", every_lang("tatoeba", 40), optimistic={"de": "made up for the test"})]
    scores = analyse(tidy(*runs), NO_DISTANCES, SETTINGS).benchmark_scores
    retrieval = row(scores, benchmark="XTREME", qa_variant="f1", group="retrieval")
    assert retrieval["score"] == pytest.approx(40) and retrieval["optimistic"] == "left out: tatoeba de; bucc2018 " \
                                                                                  "de,fr,ru,zh"
    only_bucc = analyse(tidy(runs[0]), NO_DISTANCES, SETTINGS).benchmark_scores
    retrieval = row(only_bucc, benchmark="XTREME", qa_variant="f1", group="retrieval")
    assert math.isnan(retrieval["score"]) and retrieval["tasks"] == "tatoeba"
    assert retrieval["note"] == "not computed: no run or no complete cell for tatoeba"
    tatoeba = TASKS["tatoeba"].langs
    every_one = analyse(tidy(runs[0], values("tatoeba", every_lang("tatoeba", 40),
                                             optimistic=dict.fromkeys(tatoeba, "made up for the test"))),
                        NO_DISTANCES, SETTINGS).benchmark_scores
    retrieval = row(every_one, benchmark="XTREME", qa_variant="f1", group="retrieval")
    assert math.isnan(retrieval["score"]) and retrieval["tasks"] == ""
    assert retrieval["note"] == "not computed: every task's scores are optimistic (include_optimistic keeps them)"


def test_seed_none_and_numbered_seeds_in_one_configuration_are_refused_with_the_reason():
    """The base encoder (seed none) and a seeded target run's encoder both score Tatoeba as `full · m · none`."""
    mixed = [values("tatoeba", every_lang("tatoeba", 40), seed="none"),
             values("tatoeba", every_lang("tatoeba", 60), seed="1"),
             values("tatoeba", every_lang("tatoeba", 44), seed="1", intermediate="anli", source="en"),
             values("tatoeba", every_lang("tatoeba", 46), seed="2", intermediate="anli", source="en")]
    analysis = analyse(tidy(*mixed), NO_DISTANCES, SETTINGS)
    assert "full · m · none × tatoeba: runs with seed none (deterministic, e.g. retrieval straight from an " \
           "encoder) and with seed(s) 1: two different models under one configuration: refused, in no score, " \
           "average or gain (tell them apart with tags or parent_run_id)" in analysis.notes
    assert set(analysis.per_language["intermediate_task"]) == set(analysis.coverage["intermediate_task"]) == {"anli"}
    anli = row(analysis.task_averages, target_task="tatoeba")
    assert (anli["avg"], anli["n_seeds"], anli["note"]) == (pytest.approx((44 + 46) / 2), 2, "")
    assert analysis.task_gains.empty and analysis.language_gains.empty  # no baseline left to pair with
    assert not any(note.endswith(": : excluded from every average") for note in analysis.notes)


def test_a_configuration_whose_tasks_have_different_seeds_names_the_missing_ones():
    """Seeds 1 and 2 of every XTREME-R task but Tatoeba (deterministic), and a seed 3 of XNLI only."""
    runs = [run for seed, xnli in (("1", 70), ("2", 72)) for run in xtreme_r_and_xtreme_runs(seed, xnli)
            if run[0]["target_task"] != "tatoeba"]
    runs += [values("xnli", every_lang("xnli", 77), seed="3"),
             values("tatoeba", every_lang("tatoeba", 40), seed="none")]
    scores = analyse(tidy(*runs), NO_DISTANCES, SETTINGS).benchmark_scores
    xnli = (70 + 72 + 77) / 3
    overall = row(scores, benchmark="XTREME-R", qa_variant="f1", group="overall")
    assert overall["score"] == pytest.approx((xnli + 60 + (33 * 80 + 5 * 0) / 38 + 50 + 70 + 60 + 50 + 30 + 20 + 40)
                                             / 10)
    assert math.isnan(overall["score_std"]) and pd.isna(overall["n_seeds"])
    assert overall["note"] == ("its tasks have different seeds: mean of their seed means, no std (seed 3 missing in "
                               "xcopa, udpos, panx, xquad, mlqa, tydiqa, mewslix, lareqa; tatoeba deterministic "
                               "(seed none))")
    classification = row(scores, benchmark="XTREME-R", qa_variant="f1", group="classification")
    assert classification["score"] == pytest.approx((xnli + 60) / 2)
    assert classification["note"] == "its tasks have different seeds: mean of their seed means, no std (seed 3 " \
                                     "missing in xcopa)"
    tagging = row(scores, benchmark="XTREME-R", qa_variant="f1", group="tagging")  # seeds 1 and 2 in both tasks
    assert (tagging["n_seeds"], tagging["score_std"], tagging["note"]) == (2, pytest.approx(0), "")


def test_seed_gaps_order_seeds_as_numbers():
    gaps = aggregate._seed_gaps({"xnli": {"1", "2", "3"}, "udpos": {"1", "2"}, "tatoeba": {"none"},
                                 "mlqa": {"1", "2", "3", "10"}})
    assert gaps == "seed 3 missing in udpos; seed 10 missing in xnli, udpos; tatoeba deterministic (seed none)"


def test_low_resource_gain_and_source_language_difference_per_seed():
    """udpos(ja) against udpos(en): per seed, the difference of their gains; the low-resource average covers the
    listed languages only (here sw and ur of XNLI)."""
    runs = []
    for seed, (en_gain, ja_gain) in zip(("1", "2", "3"), ((1, -1), (2, -2), (3, -6))):
        runs.append(values("xnli", every_lang("xnli", 60, sw=40, ur=30), seed=seed))
        for source, gain in (("en", en_gain), ("ja", ja_gain)):
            low_resource_gain = 2 * gain  # sw and ur gain twice as much as the other languages
            runs.append(values("xnli", every_lang("xnli", 60 + gain, sw=40 + low_resource_gain,
                                                  ur=30 + low_resource_gain), seed=seed, intermediate="udpos",
                               source=source))
    analysis = analyse(tidy(*runs), NO_DISTANCES, Settings(("sw", "ur", "yo"), n_resamples=1000))
    averages = row(analysis.task_averages, intermediate_task="none")
    assert averages["avg_low_resource"] == pytest.approx(35) and averages["avg_low_resource_std"] == 0
    english = row(analysis.task_gains, intermediate_source_lang="en")
    assert english["gain_low_resource"] == pytest.approx(2 * (1 + 2 + 3) / 3)
    n_langs = len(TASKS["xnli"].langs)
    assert english["gain"] == pytest.approx((n_langs + 2) / n_langs * 2)  # 13 languages gain g, sw and ur 2g
    japanese = row(analysis.task_source_differences, intermediate_source_lang="ja")
    per_seed = np.array([-1 - 1, -2 - 2, -6 - 3], dtype=float) * 2  # low-resource: (ja gain - en gain) x 2
    assert japanese["gain_low_resource"] == pytest.approx(per_seed.mean())
    resampled = per_seed[np.random.default_rng(0).integers(0, 3, size=(1000, 3))].mean(axis=1)
    assert (japanese["gain_low_resource_ci_low"], japanese["gain_low_resource_ci_high"]) == \
        pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))
    assert len(analysis.task_source_differences) == 1  # udpos(en) is the reference; none has no English arm


def test_adapter_stilts_gains_over_madx_without_an_intermediate_task():
    """adapter_stilts starts from an intermediate run: its no-intermediate counterpart is MAD-X, not itself."""
    runs = []
    for seed, (madx, stilts) in zip(("1", "2"), ((30, 34), (32, 33))):
        runs.append(values("xnli", every_lang("xnli", madx), seed=seed, method="madx"))
        runs.append(values("xnli", every_lang("xnli", stilts), seed=seed, method="adapter_stilts",
                           intermediate="udpos", source="en"))
        runs.append(values("xnli", every_lang("xnli", 50), seed=seed))  # full: its own baseline, no arm
    analysis = analyse(tidy(*runs), NO_DISTANCES, Settings(("sw",), n_resamples=100))
    gain = row(analysis.task_gains, method="adapter_stilts")
    assert (gain["gain"], gain["n_seeds"]) == (pytest.approx(((34 - 30) + (33 - 32)) / 2), 2)
    assert len(analysis.task_gains) == 1 and "baseline_method" not in analysis.task_gains
    assert not [note for note in analysis.notes if "no gain over the no-intermediate baseline" in note]

"""The demo's closing summary (analysis/summary.py) on hand-made tidy tables and a small Optuna journal; every
expected number is worked out here, by hand."""

import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from analysis import aggregate, summary
from analysis.collect import TIDY_COLUMNS

LANGS = ("en", "de", "sw", "ur")
SETTINGS = aggregate.Settings(low_resource_langs=("sw", "ur"), n_resamples=100, langs=LANGS)
NO_DISTANCES = pd.DataFrame(columns=["source_lang", "lang", "distance", "distance_note"])


def run(task, scores, intermediate="none", source="", method="full"):
    metric = {"xnli": "accuracy", "panx": "f1"}[task]
    return [dict(run_id=f"{method}-{intermediate}-{source}-{task}", parent_run_id="", experiment_id="1", method=method,
                 model="m", intermediate_task=intermediate, intermediate_source_lang=source, target_task=task,
                 seed="42", lang=lang, eval_split="dev", optimistic="", metric=metric, value=float(value))
            for lang, value in zip(LANGS, scores) if value is not None]


def analysed(*runs):
    tidy = pd.DataFrame([row for rows in runs for row in rows], columns=list(TIDY_COLUMNS))
    return aggregate.analyse(tidy, NO_DISTANCES, SETTINGS)


DEMO_LIKE = analysed(
    run("xnli", (60, 50, 40, 30)),                                 # avg 45.0, without en 40.0
    run("xnli", (62, 54, 44, 36), "anli", "en"),                   # avg 49.0, without en 44.67; gain +4.0
    run("xnli", (60, 50, 40, 34), "udpos", "ja"),                  # avg 46.0, without en 41.33; gain +1.0
    run("panx", (50, 40, 30, 20)),                                 # avg 35.0, without en 30.0; sw,ur 25.0
    run("panx", (30, 20, 16, 10), method="madx"),                  # avg 19.0, without en 15.33; sw,ur 13.0
    run("panx", (50, 40, None, None), "anli", "en"),               # sw, ur missing: not computed
)


def rows_of(table_text: str) -> dict[str, str]:
    """The rendered table's lines by their configuration label."""
    lines = table_text.splitlines()[1:]
    return {label: line for line in lines for label in ("full · anli(en)", "full · none", "full · udpos(ja)",
                                                         "madx · none") if line.startswith(label + " ")}


def test_main_table_shows_computed_cells_only():
    title, table = summary.main_table(DEMO_LIKE.task_averages)
    assert title.startswith("main table")
    header = table.splitlines()[0]
    assert "panx f1 (4 langs)" in header and "xnli accuracy (4 langs)" in header
    assert "nan" not in table.lower()
    rows = rows_of(table)
    assert rows["full · none"].split()[-4:] == ["35.0", "(30.0)", "45.0", "(40.0)"]
    assert rows["full · anli(en)"].split()[-3:] == [summary.NO_VALUE, "49.0", "(44.7)"]
    assert rows["full · udpos(ja)"].split()[-3:] == [summary.NO_VALUE, "46.0", "(41.3)"]
    assert rows["madx · none"].split()[-3:] == ["19.0", "(15.3)", summary.NO_VALUE]


def test_one_line_per_question():
    helps, source, adapters = summary.answers(DEMO_LIKE, SETTINGS.low_resource_langs)
    assert helps == ("- does intermediate-task training help? gain over no intermediate task, "
                     "xnli: full · anli(en) +4.0, full · udpos(ja) +1.0")
    assert source == ("- does the intermediate task's source language matter? the arms full · anli(en), "
                      "full · udpos(ja) differ in task as well as source language: their gains above cannot tell the "
                      "two apart")
    assert adapters == ("- do adapters beat full fine-tuning on low-resource languages? "
                        "madx 13.0 vs full 25.0 on panx (sw,ur): -12.0")


def test_one_task_in_two_source_languages_answers_the_source_question():
    analysis = analysed(run("xnli", (60, 50, 40, 30)), run("xnli", (62, 54, 44, 36), "anli", "en"),
                        run("xnli", (61, 52, 41, 30), "anli", "sw"))  # gains +4.0 (en) and +1.0 (sw)
    _, source, _ = summary.answers(analysis, SETTINGS.low_resource_langs)
    assert source.endswith("full · anli(en) on xnli: +4.0; full · anli(sw) on xnli: +1.0")
    english_only = analysed(run("xnli", (60, 50, 40, 30)), run("xnli", (62, 54, 44, 36), "anli", "en"))
    _, source, _ = summary.answers(english_only, SETTINGS.low_resource_langs)
    assert source.endswith("? the study trains no intermediate task in more than one source language")


def test_study_line_counts_trials_and_names_the_best(tmp_path):
    journal = tmp_path / "journal.log"
    study = optuna.create_study(study_name="panx.full", direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    lr_range = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    for lr, value in ((1e-4, 40.0), (3e-4, 47.0)):
        study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions=lr_range, value=value))
    study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3}, distributions=lr_range,
                                              state=optuna.trial.TrialState.PRUNED))
    assert summary.study_lines(journal) == [
        "optuna: study panx.full: 3 trials (2 complete, 1 pruned); best lr 0.0003 (English select 47.00); "
        f"optuna-dashboard {journal}"]
    assert summary.study_lines(tmp_path / "none.log") == [f"optuna: no journal at {tmp_path / 'none.log'}"]

"""The `analysis` entry point end to end on a temporary store: files, artifacts, summary and the bad-input boundary."""

import mlflow
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from analysis import main
from components.settings import PROJECT_ROOT
from components.tasks import TASKS
from tests.test_analysis_collect import log_run

XNLI = TASKS["xnli"].langs


def invoke(*args):
    result = CliRunner().invoke(main.main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def log_study():
    """No-intermediate baseline and anli(en) on XNLI, two seeds each, plus a FAILED and a RUNNING run."""
    for seed, offset in (("1", 0), ("2", 1)):
        baseline = {"task": "xnli", "model": "m", "method": "full", "seed": seed, "intermediate_task": "none"}
        log_run({f"eval/xnli/{lang}/accuracy": 60.0 + offset for lang in XNLI}, params=baseline)
        log_run({f"eval/xnli/{lang}/accuracy": 62.0 + 2 * offset for lang in XNLI},
                params={**baseline, "intermediate_task": "anli", "intermediate_source_lang": "en"})
    log_run({"eval/xnli/de/accuracy": 1.0}, status="FAILED")
    log_run({"eval/xnli/de/accuracy": 1.0}, status="RUNNING")


def test_report_is_written_logged_and_summarised(tracking_store, tmp_path):
    log_study()
    folder = tmp_path / "report"
    code, out = invoke("--experiment", "study", "--output-dir", str(folder), "--n-bootstrap", "1000")
    assert code == 0, out
    assert "ignored (not FINISHED): 1 FAILED, 1 RUNNING" in out
    assert "every run has method = full: no difference from full fine-tuning" in out
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3  # heatmap, gain vs distance, low-resource bars
    assert "XCOPA is counted once" in html and "Spearman" in html
    for table in ("task_averages", "benchmark_scores", "gains_task", "gains_language", "excluded", "per_language"):
        assert (folder / "tables" / f"{table}.csv").is_file() and (folder / "tables" / f"{table}.md").is_file()
    # log_study's runs log no eval_split params (as runs from before the param): every table says so.
    assert set(pd.read_csv(folder / "tables" / "task_averages.csv")["eval_split"]) == {"unrecorded"}
    assert "| configuration | target_task | metric | eval_split | ar |" in (folder / "report.md").read_text()
    gain = pd.read_csv(folder / "tables" / "gains_task.csv").iloc[0]
    assert (gain["target_task"], gain["gain"], gain["n_seeds"]) == ("xnli", pytest.approx((62 - 60 + 64 - 61) / 2), 2)
    analysis_run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`xlt.phase` = 'analysis'",
                                      output_format="list")[0]
    assert analysis_run.info.status == "FINISHED"
    artifacts = {item.path for item in MlflowClient().list_artifacts(analysis_run.info.run_id, "analysis")}
    assert {"analysis/report.html", "analysis/report.md", "analysis/tables", "analysis/figures"} <= artifacts
    assert (folder / "ANALYSIS_RUN_ID").read_text().strip() == analysis_run.info.run_id


def test_rerun_replaces_an_earlier_report_but_not_a_foreign_folder(tracking_store, tmp_path):
    log_study()
    folder = tmp_path / "report"
    assert invoke("--output-dir", str(folder), "--n-bootstrap", "100")[0] == 0
    (folder / "figures" / "stale.png").write_bytes(b"")
    assert invoke("--output-dir", str(folder), "--n-bootstrap", "100")[0] == 0
    assert not (folder / "figures" / "stale.png").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    code, out = invoke("--output-dir", str(foreign))
    assert code == 2 and "was not written by the analysis stage" in out
    assert (foreign / "thesis.tex").read_text() == "keep me"


def test_bad_input_is_one_error_line_and_leaves_no_run(tracking_store, tmp_path):
    for args, message in [
        ((), "no `evaluate` runs match all experiments"),
        (("--experiment", "nope"), "experiment 'nope' does not exist"),
        (("--low-resource-langs", "sw,xx"), "unknown low-resource language(s) xx"),
        (("--langs", "en,qq"), "unknown language(s) in langs qq"),
        (("--parent-run-id", "x' or '1"), "expected an MLflow run id"),
    ]:
        code, out = invoke(*args, "--output-dir", str(tmp_path / "report"))
        assert code == 2 and "xstilts: error: " in out and message in out, out
    # A closed set is refused by the command line itself, before anything is read.
    code, out = invoke("--distance", "syntax", "--output-dir", str(tmp_path / "report"))
    assert code == 2 and "'syntax' is not one of 'syntactic'" in out, out
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_mlproject_parameters_are_the_cli_options():
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text(encoding="utf-8"))["entry_points"]["analysis"]
    options = {option.name for option in main.main.params}
    assert set(project["parameters"]) == options
    assert all(f"--{name.replace('_', '-')} {{{name}}}" in project["command"] for name in options)


def test_optimistic_scores_are_labelled_and_left_out_of_the_benchmark_scores_unless_asked_for(tracking_store,
                                                                                              tmp_path):
    """Tatoeba (40 in every language) and BUCC (10, in-sample in every language) from the base encoder."""
    encoder = {"model": "m", "method": "full", "seed": "none", "intermediate_task": "none"}
    log_run({f"eval/tatoeba/{lang}/accuracy": 40.0 for lang in TASKS["tatoeba"].langs},
            params={**encoder, "task": "tatoeba"})
    bucc = TASKS["bucc2018"].langs
    log_run({f"eval/bucc2018/{lang}/f1": 10.0 for lang in bucc},
            params={**encoder, "task": "bucc2018", **{f"optimistic/bucc2018/{lang}": "in-sample" for lang in bucc}})
    for flag, retrieval_score, fate in (("false", 40.0, "left out"), ("true", (40 + 10) / 2, "included")):
        folder = tmp_path / flag
        code, out = invoke("--experiment", "study", "--output-dir", str(folder), "--n-bootstrap", "100",
                           "--include-optimistic", flag)
        assert code == 0, out
        scores = pd.read_csv(folder / "tables" / "benchmark_scores.csv", keep_default_na=False)
        retrieval = scores[(scores["benchmark"] == "XTREME") & (scores["group"] == "retrieval")
                           & (scores["qa_variant"] == "f1")].iloc[0]
        assert (float(retrieval["score"]), retrieval["optimistic"]) == (pytest.approx(retrieval_score),
                                                                          f"{fate}: bucc2018 de,fr,ru,zh")
        report = (folder / "report.md").read_text(encoding="utf-8")
        assert "## Optimistic scores" in report and f"Optimistic scores: {fate} " in report
        assert "| full · m · none | bucc2018 | de,fr,ru,zh | in-sample |" in report
        assert "| full · m · none | bucc2018 | f1 | unrecorded | de,fr,ru,zh |" in report  # the per-language grid
    analysis_runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`xlt.phase` = 'analysis'")
    assert sorted(analysis_runs["params.include_optimistic"]) == ["False", "True"]

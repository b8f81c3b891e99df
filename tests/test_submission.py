"""Prediction files named by what they hold, and the submission folder assembled from them, scored with the file
contract of google-research/xtreme's `evaluate.py`; UD-POS on tiny fixture data and the tiny model."""

import json

import mlflow
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from analysis import submission
from components import tracking
from components.predictions import prediction_file
from components.settings import DATA_ROOT_ENV, PROJECT_ROOT
from components.tasks import get_task
from pipelines import evaluate, target
from tests.test_entry_points import FAST, all_runs, assert_clean_failure, invoke, run_id_of

UDPOS = get_task("udpos")
TAGS = ("DET", "NOUN", "VERB", "ADJ")


def test_a_file_is_named_by_its_split_and_share_of_the_split():
    assert prediction_file("de", "test", "tsv", "", range(1116), 1116).name == "test-de.tsv"
    capped = prediction_file("de", "dev", "tsv", "", range(100), 2490)
    assert (capped.name, capped.complete, capped.item_ranges) == ("dev-de.100-of-2490.tsv", False, "0-99")
    evaluated = prediction_file("sw", "dev", "tsv", "", (1998, 1999, 2000, 2400), 2490)
    assert (evaluated.name, evaluated.item_ranges) == ("dev-sw.4-of-2490.tsv", "1998-2000,2400")


def sentences(lang: str, count: int) -> list[list[tuple[str, str]]]:
    """`count` tagged sentences of 2 to 4 words, different in each language."""
    return [[(f"{lang}{number}w{position}", TAGS[(number + position) % len(TAGS)]) for position in
             range(2 + (number + len(lang)) % 3)] for number in range(count)]


def conll(sentence_list, tagged: bool = True) -> str:
    return "\n\n".join("\n".join(f"{word}\t{tag}" if tagged else word for word, tag in sentence)
                       for sentence in sentence_list) + "\n"


def udpos_test_sizes() -> dict[str, int]:
    """Test sentences per language: 2 to 4, so that a file of another language or a capped one differs in length."""
    return {lang: 2 + index % 3 for index, lang in enumerate(UDPOS.langs)}


@pytest.fixture
def udpos_root(tmp_path, monkeypatch):
    """A data root with UD-POS English train and dev files and a labeled test file in every language of the task."""
    root = tmp_path / "data"
    folder = root / "xtreme/download/udpos"
    folder.mkdir(parents=True)
    (folder / "train-en.tsv").write_text(conll(sentences("train", 24)), encoding="utf-8")
    (folder / "dev-en.tsv").write_text(conll(sentences("dev", 6)), encoding="utf-8")
    for lang, count in udpos_test_sizes().items():
        (folder / f"test-{lang}.tsv").write_text(conll(sentences(lang, count)), encoding="utf-8")
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    return root


def train_and_evaluate(model_dir, *evaluate_args) -> str:
    code, out = invoke(target.main, ["--task", "udpos", "--model", str(model_dir), *FAST])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, *evaluate_args])
    assert code == 0, out
    return target_id, run_id_of(out, "evaluate")


def make_submission(*args):
    result = CliRunner().invoke(submission.main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def read_tag(path) -> list[list[str]]:
    """google-research/xtreme evaluate.py's `read_tag`: stripped lines, a blank line ends a sentence."""
    labels, example = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            example.append(line.strip())
        else:
            labels.append(example)
            example = []
    if example:
        labels.append(example)
    return labels


def score_like_xtreme(prediction_folder, label_folder, task: str, langs) -> dict[str, float]:
    """The file contract of xtreme's `evaluate_one_task` for a tagging task, language by language: both
    `<folder>/<task>/test-<lang>.tsv` files must exist and hold the same number of sentences (its assertion); scored
    here by token accuracy, as word counts must match too."""
    scores = {}
    for lang in langs:
        predictions = read_tag(prediction_folder / task / f"test-{lang}.tsv")
        labels = read_tag(label_folder / task / f"test-{lang}.tsv")
        assert len(predictions) == len(labels), f"Number of examples in {lang} not matched in {task} task"
        assert [len(sentence) for sentence in predictions] == [len(sentence) for sentence in labels]
        pairs = [(p, g) for ps, gs in zip(predictions, labels) for p, g in zip(ps, gs)]
        scores[lang] = 100 * sum(p == g for p, g in pairs) / len(pairs)
    return scores


def test_submission_takes_the_complete_test_files_and_passes_the_official_file_contract(
        tracking_store, tiny_model_dir, udpos_root, tmp_path):
    _, complete_id = train_and_evaluate(tiny_model_dir)
    # A later capped evaluation of German: its file is named as a share, and the submission keeps the complete one.
    code, out = invoke(evaluate.main, ["--train-run-id", MlflowClient().get_run(complete_id).data.params[
        "train_run_id"], "--langs", "de", "--max-eval-examples", "1"])
    assert code == 0, out
    capped_id = run_id_of(out, "evaluate")
    de_size = udpos_test_sizes()["de"]
    assert [entry["file"] for entry in json.loads(mlflow.artifacts.load_text(
        f"runs:/{capped_id}/predictions/udpos/manifest.json"))] == [f"test-de.1-of-{de_size}.tsv"]
    manifest = json.loads(mlflow.artifacts.load_text(f"runs:/{complete_id}/predictions/udpos/manifest.json"))
    assert [(entry["file"], entry["n_items"], entry["complete"]) for entry in manifest] == [
        (f"test-{lang}.tsv", count, True) for lang, count in udpos_test_sizes().items()]

    folder = tmp_path / "submission"
    code, out = make_submission("--output-dir", str(folder))
    assert code == 0, out
    assert f"udpos: {len(UDPOS.langs)} languages -> {folder / 'udpos'}" in out
    assert sorted(path.name for path in (folder / "udpos").iterdir()) == sorted(
        f"test-{lang}.tsv" for lang in UDPOS.langs)
    gold = tmp_path / "gold/udpos"
    gold.mkdir(parents=True)
    for lang, count in udpos_test_sizes().items():  # XTREME's label files: one tag per line
        (gold / f"test-{lang}.tsv").write_text(conll([[(tag, "") for _, tag in sentence]
                                                      for sentence in sentences(lang, count)], tagged=False))
    scores = score_like_xtreme(folder, tmp_path / "gold", "udpos", UDPOS.langs)
    metrics = MlflowClient().get_run(complete_id).data.metrics
    assert scores == pytest.approx({lang: metrics[f"eval/udpos/{lang}/token_accuracy"] for lang in UDPOS.langs})
    report = json.loads((folder / submission.REPORT).read_text())
    assert {file["run_id"] for file in report["written"]["udpos"]["files"].values()} == {complete_id}
    assert report["left_out"] == {}
    [submission_run] = [run for run in all_runs() if run.data.tags.get("xlt.phase") == "submission"]
    assert submission_run.info.status == "FINISHED" and submission_run.data.params["written_tasks"] == "udpos"
    assert "submission/udpos/test-de.tsv" in {
        item.path for item in MlflowClient().list_artifacts(submission_run.info.run_id, "submission/udpos")}


def test_withheld_test_labels_are_scored_on_dev_logged_and_kept_out_of_a_submission(
        tracking_store, tiny_model_dir, udpos_root, tmp_path):
    # German as a real XTREME download leaves it: a words-only test file, a labeled dev file.
    words_only = udpos_root / "xtreme/download/udpos/test-de.tsv"
    words_only.write_text(conll(sentences("de", 3), tagged=False), encoding="utf-8")
    (udpos_root / "xtreme/download/udpos/dev-de.tsv").write_text(conll(sentences("devde", 5)), encoding="utf-8")
    _, evaluate_id = train_and_evaluate(tiny_model_dir, "--langs", "de,fr")
    run = MlflowClient().get_run(evaluate_id)
    assert (run.data.params["eval_split/udpos/de"], run.data.params["eval_split/udpos/fr"]) == ("dev", "test")
    assert run.data.params["eval_split_reason/udpos/de"] == \
        f"test: labels withheld in {words_only} (every line holds a word and no tag)"
    assert run.data.metrics["eval_examples/udpos/de/n"] == 5
    assert sorted(item.path for item in MlflowClient().list_artifacts(evaluate_id, "predictions/udpos")) == [
        "predictions/udpos/dev-de.tsv", "predictions/udpos/dev-de.tsv.table.json", "predictions/udpos/manifest.json",
        "predictions/udpos/test-fr.tsv", "predictions/udpos/test-fr.tsv.table.json"]

    folder = tmp_path / "submission"
    code, out = make_submission("--output-dir", str(folder))
    assert_clean_failure(code, out, r"no task of .* has complete test predictions in every language")
    assert f"de: the newest file holds dev items (dev-de.tsv, run {evaluate_id})" in out
    assert "ar: no prediction file" in out and "fr:" not in out
    assert not folder.exists()


def log_evaluate_run(seed: str, files: dict[str, str], manifest: list[dict] | None) -> str:
    """A FINISHED `evaluate` run of XNLI with prediction files and, unless None, a manifest listing them."""
    params = {"task": "xnli", "model": "m", "method": "full", "seed": seed, "intermediate_task": "none"}
    with tracking.phase_run("evaluate", params) as run_id:
        for name, text in files.items():
            tracking.log_text(text, f"predictions/xnli/{name}")
        if manifest is not None:
            tracking.log_text(json.dumps(manifest), "predictions/xnli/manifest.json")
    return run_id


def test_runs_without_a_manifest_and_mixed_configurations_are_never_assembled(tracking_store, tmp_path):
    # Before manifests, `test-<lang>` files held dev or capped items as well: such a file is never taken.
    old_id = log_evaluate_run("1", {"test-de.tsv": "entailment\n"}, None)
    new_file = prediction_file("de", "test", "tsv", "neutral\n", range(1), 1)
    new_id = log_evaluate_run("2", {new_file.name: new_file.content}, [new_file.manifest_entry()])
    code, out = make_submission("--output-dir", str(tmp_path / "out"))
    assert_clean_failure(code, out, r"xnli: left out \(2 configurations evaluated xnli .*choose one with run_params")
    code, out = make_submission("--output-dir", str(tmp_path / "out"), "--run-params", "seed=1")
    assert_clean_failure(code, out, f"de: no prediction file; not used: 1 run\\(s\\) without a manifest.json, "
                                    f"evaluated before prediction files were named by what they hold \\({old_id}\\)")
    # The complete German file is taken, but XNLI has 14 other languages.
    code, out = make_submission("--output-dir", str(tmp_path / "out"), "--run-params", "seed=2")
    assert_clean_failure(code, out, r"xnli: left out \(ar: no prediction file; bg: no prediction file")
    assert " de: " not in out and new_id not in out
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, out = make_submission("--output-dir", str(foreign))
    assert_clean_failure(code, out, f"output folder {foreign} is not empty and was not written by the submission")


def test_mlproject_parameters_are_the_cli_options():
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text(encoding="utf-8"))["entry_points"]["submission"]
    options = {option.name for option in submission.main.params}
    assert set(project["parameters"]) == options
    assert all(f"--{name.replace('_', '-')} {{{name}}}" in project["command"] for name in options)

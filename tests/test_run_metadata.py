"""What the MLflow UI shows of a run: its name, comparison tags, description, dataset inputs, logged model,
prediction tables, the evaluate run's averages and carried training settings, and the analysis run's place and
numbers. Expectations are written out by hand (names, tags, item ranges) or recomputed from the bundle's files."""

import hashlib
import json
import statistics

import mlflow
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from analysis import main as analysis_main
from components import run_identity, tracking
from components.settings import data_root
from pipelines import evaluate, intermediate, target
from tests.test_analysis_collect import experiment_id, log_run
from tests.test_entry_points import FAST, invoke, run_id_of

LANGS = ("en", "de", "sw")  # sw: the only one of these in configs/low_resource_languages.yaml
XNLI_DEV_EVAL_ITEMS = "1998-2489"  # dev-split scores the last 492 of XNLI's 2,490 dev items (test_entry_points)


@pytest.fixture(scope="module")
def chain_store(tmp_path_factory, tiny_model_dir):
    """intermediate (anli) -> target (xnli) -> evaluate (en, de, sw) on the tiny model, once for the module; yields
    the store's URI and the run ids by phase."""
    folder = tmp_path_factory.mktemp("metadata-store")
    with pytest.MonkeyPatch.context() as patch:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        model = ["--model", str(tiny_model_dir)]
        code, out = invoke(intermediate.main, ["--task", "anli", *model, *FAST])
        assert code == 0, out
        intermediate_id = run_id_of(out, "intermediate")
        code, out = invoke(target.main, ["--task", "xnli", "--init-run-id", intermediate_id, *model, *FAST])
        assert code == 0, out
        target_id = run_id_of(out, "target")
        code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", ",".join(LANGS)])
        assert code == 0, out
        yield uri, {"intermediate": intermediate_id, "target": target_id, "evaluate": run_id_of(out, "evaluate")}
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture
def chain(chain_store, monkeypatch):
    """The chain's runs by phase, with the chain's store the current one (other tests point MLflow elsewhere)."""
    uri, run_ids = chain_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    return {phase: client.get_run(run_id) for phase, run_id in run_ids.items()}


def xlt_tags(run) -> dict[str, str]:
    return {key: value for key, value in run.data.tags.items()
            if key.startswith("xlt.")
            and key not in ("xlt.phase", "xlt.task", "xlt.adapter", "xlt.lang", "xlt.cpu_threads")}


def test_runs_started_by_hand_are_named_and_tagged_from_what_they_are(chain, tiny_model_dir):
    model = chain["target"].data.params["model"]
    configuration = f"full · {model} · anli(en)"
    assert chain["intermediate"].info.run_name == "intermediate · anli(en) · full · s42"
    assert chain["target"].info.run_name == "target · xnli · full · from anli(en) · s42"
    assert chain["evaluate"].info.run_name == "eval · xnli · full · from anli(en) · s42"
    intermediate_id, target_id = chain["intermediate"].info.run_id, chain["target"].info.run_id
    assert xlt_tags(chain["target"]) == {"xlt.configuration": configuration, "xlt.method": "full",
                                         "xlt.intermediate_task": "anli", "xlt.source_lang": "en",
                                         "xlt.target_task": "xnli", "xlt.seed": "42",
                                         "xlt.upstream_runs": intermediate_id}
    assert xlt_tags(chain["evaluate"]) == {**xlt_tags(chain["target"]), "xlt.upstream_runs": target_id}
    assert xlt_tags(chain["intermediate"]) == {"xlt.configuration": configuration, "xlt.method": "full",
                                               "xlt.intermediate_task": "anli", "xlt.source_lang": "en",
                                               "xlt.seed": "42"}


def test_the_configuration_tag_is_the_analysis_label():
    from analysis.aggregate import config_label

    row = {"method": "madx", "model": "xlm-roberta-base", "intermediate_task": "anli", "intermediate_source_lang": "de"}
    assert config_label(row) == "madx · xlm-roberta-base · anli(de)"
    tags = run_identity.comparison_tags("evaluate", {**row, "task": "panx", "seed": "1"}, "")
    assert tags["configuration"] == "madx · xlm-roberta-base · anli(de)"


def test_description_links_the_upstream_run(chain):
    note = chain["evaluate"].data.tags["mlflow.note.content"]
    target_run = chain["target"]
    assert note.startswith("Zero-shot evaluation of xnli in en,de,sw of the target run below (method full, after "
                           "anli(en), seed 42).")
    assert (f"- target run: [target · xnli · full · from anli(en) · s42](#/experiments/"
            f"{target_run.info.experiment_id}/runs/{target_run.info.run_id})") in note
    experiment = MlflowClient().get_experiment(target_run.info.experiment_id)
    assert "docs/tracking-ui.md" in experiment.tags["mlflow.note.content"]
    assert experiment.tags["xlt.suite"] == "xstilts"


def test_evaluate_logs_chart_keys_task_averages_and_the_scored_runs_settings(chain):
    metrics, params = chain["evaluate"].data.metrics, chain["evaluate"].data.params
    scores = {lang: metrics[f"eval/xnli/{lang}/accuracy"] for lang in LANGS}
    for lang, value in scores.items():
        assert metrics[f"xnli.accuracy/{lang}"] == value
    assert metrics["xnli.accuracy/avg"] == pytest.approx(statistics.mean(scores.values()))
    assert metrics["xnli.accuracy/avg_no_en"] == pytest.approx((scores["de"] + scores["sw"]) / 2)
    assert metrics["xnli.accuracy/avg_low_resource"] == pytest.approx(scores["sw"])
    assert (params["avg_langs/xnli"], params["avg_no_en_langs/xnli"], params["avg_low_resource_langs/xnli"]) == \
        ("en,de,sw", "de,sw", "sw")
    target_run = chain["target"]
    assert metrics["select/xnli/en/accuracy"] == target_run.data.metrics["select/xnli/en/accuracy"]
    assert (params["target/lr"], params["target/epochs"], params["target/max_train_examples"]) == \
        (target_run.data.params["lr"], "1.0", "48")


def test_selection_score_is_logged_once_per_evaluation(chain):
    """FAST trains one epoch with one evaluation: its value is logged once, not again past the training steps."""
    history = MlflowClient().get_metric_history(chain["target"].info.run_id, "select/xnli/en/accuracy")
    assert len(history) == 1


def digest(examples) -> str:
    return hashlib.sha256(json.dumps(examples, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def dataset_inputs(run) -> dict[str, tuple[str, dict[str, str], str]]:
    return {entry.dataset.name: ({tag.key: tag.value for tag in entry.tags}, entry.dataset.digest)
            for entry in run.inputs.dataset_inputs}


def test_training_selection_and_evaluation_data_are_dataset_inputs(chain):
    evaluated = dataset_inputs(chain["evaluate"])
    assert set(evaluated) == {"xnli-dev-en", "xnli-dev-de", "xnli-dev-sw"}
    tags, de_digest = evaluated["xnli-dev-de"]
    assert tags == {"mlflow.data.context": "testing", "task": "xnli", "split": "dev", "lang": "de",
                    "items": XNLI_DEV_EVAL_ITEMS, "n_items": "492"}
    rows = (data_root() / "xtreme/download/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()[1998:]
    by_hand = [{"text_a": a, "text_b": b, "label": label, "lang": "de"}
               for a, b, label in (row.split("\t") for row in rows)]
    assert de_digest == digest(by_hand)
    # Dev-split: the target run trains on the first 48 (FAST) of the English dev pool's training cut (items 0-1799)
    # and selects on all 198 items of its selection cut.
    trained = sorted((entry.dataset.name, {tag.key: tag.value for tag in entry.tags}["mlflow.data.context"],
                      {tag.key: tag.value for tag in entry.tags}["items"])
                     for entry in chain["target"].inputs.dataset_inputs)
    assert trained == [("xnli-dev-en", "training", "first 48 of 0-1799"),
                       ("xnli-dev-en", "validation", "first 198 of 1800-1997")]


def test_the_trained_model_is_a_logged_model_without_a_second_copy_of_its_weights(chain, tmp_path):
    target_id = chain["target"].info.run_id
    client = MlflowClient()
    [model] = mlflow.search_logged_models(experiment_ids=[chain["target"].info.experiment_id], output_format="list",
                                          filter_string=f"source_run_id = '{target_id}'")
    assert model.name == "target-xnli-full-from-anli-en-s42"
    assert model.tags["xlt.artifacts"] == f"runs:/{target_id}/model"
    assert [output.model_id for output in chain["target"].outputs.model_outputs] == [model.model_id]
    # The model's own artifacts: its description, code and environment; the weights stay the run's `model/`.
    assert sorted(path.path for path in client.list_logged_model_artifacts(model.model_id)) == [
        "MLmodel", "conda.yaml", "mlflow_model.py", "python_env.yaml", "requirements.txt"]
    assert [model_input.model_id for model_input in chain["evaluate"].inputs.model_inputs] == [model.model_id]
    assert (tracking.download_model(target_id, "target", tmp_path) / "config.json").is_file()


def test_predictions_are_a_table_beside_the_xtreme_file(chain):
    evaluate_id = chain["evaluate"].info.run_id
    table = json.loads(mlflow.artifacts.load_text(
        f"runs:/{evaluate_id}/predictions/xnli/dev-de.492-of-2490.tsv.table.json"))
    columns = table["columns"]
    assert columns == ["id", "input", "gold", "prediction", "correct"]
    rows = [dict(zip(columns, row)) for row in table["data"]]
    lines = (data_root() / "xtreme/download/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()
    predicted = mlflow.artifacts.load_text(f"runs:/{evaluate_id}/predictions/xnli/dev-de.492-of-2490.tsv").split()
    assert [row["id"] for row in rows] == list(range(1998, 2490))
    for row, line, prediction in zip(rows, lines[1998:], predicted):
        premise, hypothesis, gold = line.split("\t")
        assert (row["input"], row["gold"], row["prediction"], row["correct"]) == (
            f"{premise} ‖ {hypothesis}", gold, prediction, prediction == gold)
    accuracy = 100 * sum(row["correct"] for row in rows) / len(rows)
    assert chain["evaluate"].data.metrics["eval/xnli/de/accuracy"] == pytest.approx(accuracy)


def test_a_grid_step_is_named_when_created_and_carries_its_study(chain):
    """`main` creates a step's run before its entry point starts, with only the step's params (an evaluate step: its
    target run): the name and tags come from the target run, the study from the parent `main` run."""
    experiment = chain["target"].info.experiment_id
    with mlflow.start_run(experiment_id=experiment) as parent:
        tracking.name_run(parent.info.run_id, "main", {"config": "demo.yaml"}, {})
    run_id = tracking.create_step_run(experiment, "evaluate", "key", parent.info.run_id,
                                      {"train_run_id": chain["target"].info.run_id, "langs": "de"})
    tracking.terminate_run(run_id, "KILLED")
    step = MlflowClient().get_run(run_id)
    main_run = MlflowClient().get_run(parent.info.run_id)
    assert main_run.info.run_name == "main · demo"
    assert main_run.data.tags["xlt.study"] == "demo"
    assert step.info.run_name == "eval · xnli · full · from anli(en) · s42"
    assert step.data.tags["xlt.study"] == "demo"
    assert step.data.tags["xlt.target_task"] == "xnli"
    assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_a_name_given_by_hand_is_kept_and_a_generated_one_replaced(tracking_store):
    params = {"task": "panx", "method": "madx", "model": "xlm-roberta-base", "seed": "1", "intermediate_task": "none"}
    with mlflow.start_run(run_name="my panx try") as given, mlflow.start_run(nested=True) as generated:
        pass
    for run in (given, generated):
        tracking.name_run(run.info.run_id, "target", params, {})
    assert MlflowClient().get_run(given.info.run_id).info.run_name == "my panx try"
    assert MlflowClient().get_run(generated.info.run_id).info.run_name == "target · panx · madx · s1"


@pytest.mark.parametrize("threads", [1, 2])
def test_a_phase_run_records_the_cpu_threads_torch_computes_with(tracking_store, threads):
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tracking.phase_run("evaluate", {"task": "xnli"}) as run_id:
            pass
    finally:
        torch.set_num_threads(default)
    assert MlflowClient().get_run(run_id).data.tags["xlt.cpu_threads"] == str(threads)


def test_names_of_the_other_phases():
    assert run_identity.run_name("lang_adapter", {"lang": "sw", "seed": "42"}) == "lang_adapter · sw · s42"
    assert run_identity.run_name("analysis", {"experiment": "xstilts-demo"}) == "analysis · xstilts-demo"
    assert run_identity.run_name("evaluate", {"task": "tatoeba", "model": "/models/xlm-roberta-base", "seed": "none",
                                              "method": "full"}) == "eval · tatoeba · xlm-roberta-base · untrained"
    assert run_identity.run_name("intermediate", {"task": "anli,mnli", "source_lang": "en", "seed": "1",
                                                  "method": "full"}) == "intermediate · anli+mnli(en) · full · s1"
    assert run_identity.run_name("target", {"task": "xnli", "method": "full", "seed": "3", "intermediate_task": "none"},
                                 trial="7") == "target · xnli · full · s3 · trial 7"


def test_reused_runs_are_linked_from_the_rerun_study_run(tracking_store):
    with mlflow.start_run(run_name="eval · xnli · full · s1") as reused:
        pass
    with mlflow.start_run() as rerun:
        pass
    tracking.link_reused_runs(rerun.info.run_id, [reused.info.run_id])
    tags = MlflowClient().get_run(rerun.info.run_id).data.tags
    assert tags["xlt.reused_runs"] == reused.info.run_id
    assert (f"- [eval · xnli · full · s1](#/experiments/{reused.info.experiment_id}/runs/{reused.info.run_id})"
            in tags["mlflow.note.content"])


XNLI_SCORES = {"en": 70.0, "de": 60.0, "sw": 50.0}


def test_the_analysis_run_sits_under_its_study_and_logs_its_headline_numbers(tracking_store, tmp_path):
    """Two `main` runs of study demo (a first pass and a rerun): the analysis run nests under the newer one, and logs
    each configuration's task averages and gain over the baseline as metrics and the per-language scores as a table."""
    first = log_run({}, params={"config": "demo.yaml"}, phase="main", tags={"xlt.study": "demo"})
    rerun = log_run({}, params={"config": "demo.yaml"}, phase="main", tags={"xlt.study": "demo"})
    baseline = {"task": "xnli", "model": "m", "method": "full", "seed": "1", "intermediate_task": "none"}
    log_run({f"eval/xnli/{lang}/accuracy": value for lang, value in XNLI_SCORES.items()}, params=baseline,
            parent_run_id=first)
    log_run({f"eval/xnli/{lang}/accuracy": value + 3 for lang, value in XNLI_SCORES.items()},
            params={**baseline, "intermediate_task": "anli", "intermediate_source_lang": "en"}, parent_run_id=first)
    result = CliRunner().invoke(analysis_main.main, ["--experiment", "study", "--langs", "en,de,sw", "--output-dir",
                                                     str(tmp_path / "report"), "--n-bootstrap", "100"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [run] = mlflow.search_runs([experiment_id("study")], "tags.`xlt.phase` = 'analysis'", output_format="list")
    assert run.data.tags["mlflow.parentRunId"] == rerun
    assert run.info.run_name == "analysis · study"
    metrics = run.data.metrics
    assert metrics["avg/xnli/full : m : none"] == pytest.approx(60.0)
    assert metrics["avg_no_en/xnli/full : m : anli-en"] == pytest.approx(58.0)
    assert metrics["gain/xnli/full : m : anli-en"] == pytest.approx(3.0)
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/analysis/per_language.table.json"))
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert sorted((row["intermediate_task"], row["lang"], row["value"]) for row in rows) == sorted(
        [("none", lang, value) for lang, value in XNLI_SCORES.items()]
        + [("anli", lang, value + 3) for lang, value in XNLI_SCORES.items()])


def test_the_best_seed_of_a_cell_is_chosen_on_english_selection_only():
    """Seed 2 scores higher in the target languages, seed 1 on English selection: seed 1's run is the best."""
    import pandas as pd

    config = {"method": "full", "model": "m", "intermediate_task": "anli", "intermediate_source_lang": "en",
              "target_task": "xnli"}
    candidates = pd.DataFrame([
        {**config, "run_id": "e1", "train_run_id": "t1", "selection": 71.0, "target_language_avg": 50.0},
        {**config, "run_id": "e2", "train_run_id": "t2", "selection": 69.0, "target_language_avg": 58.0},
        {**config, "intermediate_task": "none", "intermediate_source_lang": "", "run_id": "e3", "train_run_id": "t3",
         "selection": None, "target_language_avg": 55.0}])
    best = analysis_main.best_by_selection(candidates)
    assert best["train_run_id"].tolist() == ["t1"]
    assert analysis_main.registered_name(best.iloc[0]) == "xstilts-xnli-full-m-anli-en"


def test_register_best_registers_the_logged_model_of_the_selected_target_run(chain, tmp_path):
    result = CliRunner().invoke(analysis_main.main, ["--experiment", "Default", "--langs", ",".join(LANGS),
                                                     "--output-dir", str(tmp_path / "report"), "--n-bootstrap", "100",
                                                     "--register-best", "true"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    target_id = chain["target"].info.run_id
    [model] = mlflow.search_logged_models(experiment_ids=[chain["target"].info.experiment_id], output_format="list",
                                          filter_string=f"source_run_id = '{target_id}'")
    model_folder = chain["target"].data.params["model"]  # the tiny model's folder: /tmp/.../tiny-xlmr0
    name = f"xstilts-xnli-full-{model_folder.strip('/').replace('/', '-')}-anli-en"
    [version] = MlflowClient().search_model_versions(f"name = '{name}'")
    assert version.source == f"models:/{model.model_id}"
    assert f"registered {name} version 1: the model of target run {target_id}" in result.output


def test_prediction_tables_of_tagging_multiple_choice_and_qa_items():
    from components.predictions import prediction_table

    tagging = prediction_table([{"tokens": ["Berlin", "ist", "groß"], "tags": ["B-LOC", "O", "O"], "lang": "de"}],
                               [["B-LOC", "O", "B-PER"]], (7,))
    assert tagging == {"id": [7], "input": ["Berlin ist groß"], "gold": ["B-LOC O O"],
                       "prediction": ["B-LOC O B-PER"], "correct": [False]}
    choice = prediction_table([{"context": "Il pleut.", "question": "effect", "choices": ["On reste.", "On sort."],
                                "label": 0, "lang": "fr"}], [0], range(1))
    assert choice == {"id": [0], "input": ["Il pleut. ‖ effect"], "gold": ["On reste."], "prediction": ["On reste."],
                      "correct": [True]}
    qa = prediction_table([{"id": "q1", "question": "Wo?", "context": "In Bern.", "lang": "de",
                            "answers": {"text": ["Bern", "In Bern"], "answer_start": [3, 0]}}], [("q1", "In Bern")],
                          (4,))
    assert qa == {"id": [4], "input": ["Wo? ‖ In Bern."], "gold": ["Bern ‖ In Bern"], "prediction": ["In Bern"],
                  "correct": [True]}


def test_long_item_ranges_are_shortened_to_mlflows_input_tag_limit():
    items = ",".join(f"{2 * index}" for index in range(400))  # 400 single items: 1,489 characters
    shown = tracking._shortened_items(items)
    assert len(shown) <= 500 and shown.endswith(",... (400 ranges in all)")
    assert items.startswith(shown.removesuffix(",... (400 ranges in all)") + ",")
    assert tracking._shortened_items("0-1799") == "0-1799"

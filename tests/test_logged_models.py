"""A target run's MLflow model loads with `mlflow.pyfunc.load_model` from the run's own artifacts and predicts what
`evaluate` predicted for the same items (its prediction tables), for full fine-tuning and for MAD-X with a language
adapter per input row. The inputs are read from the bundle's files here, by the items the tables name."""

import json

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from components.errors import XstiltsInputError
from components.evaluation import evaluate_language
from components.tasks import get_task
from components.trained_models import model_labels, predict_rows
from components.settings import data_root
from pipelines import evaluate, target
from tests.test_entry_points import FAST, invoke, run_id_of
from tests.test_madx_entry_points import PANX, train_lang_adapter

N_ITEMS = 20


def prediction_rows(evaluate_id: str, table_file: str) -> list[dict]:
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{evaluate_id}/predictions/{table_file}"))
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def logged_model(run_id: str):
    [model] = mlflow.search_logged_models(experiment_ids=[MlflowClient().get_run(run_id).info.experiment_id],
                                          output_format="list", filter_string=f"source_run_id = '{run_id}'")
    return model


def test_a_full_fine_tuning_run_s_model_loads_and_reads_sentence_pairs(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, ["--task", "xnli", "--model", str(tiny_model_dir), *FAST])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "de",
                                       "--max-eval-examples", str(N_ITEMS)])
    assert code == 0, out
    evaluate_id = run_id_of(out, "evaluate")
    evaluated = prediction_rows(evaluate_id, f"xnli/dev-de.{N_ITEMS}-of-2490.tsv.table.json")
    model = logged_model(target_id)
    # The weights stay the run's `model/`: the logged model holds its code and description only.
    artifacts = {entry.path for entry in MlflowClient().list_logged_model_artifacts(model.model_id)}
    assert "MLmodel" in artifacts and not any(path.endswith((".safetensors", ".bin")) for path in artifacts)

    # MLflow logs the model_config as the run's params; evaluate does not carry them as training settings.
    assert {key: value for key, value in MlflowClient().get_run(target_id).data.params.items()
            if key.startswith("pyfunc/")} == {"pyfunc/run_id": target_id, "pyfunc/lang": "en", "pyfunc/langs": "en",
                                              "pyfunc/lang_adapter_runs": "", "pyfunc/lang_adapter_fallback": "",
                                              "pyfunc/batch_size": "32"}
    assert not any(key.startswith("target/pyfunc/") for key in MlflowClient().get_run(evaluate_id).data.params)

    lines = (data_root() / "xtreme/download/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()
    pairs = [lines[row["id"]].split("\t")[:2] for row in evaluated]
    loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    predicted = loaded.predict(pd.DataFrame(pairs, columns=["text_a", "text_b"]))
    # The tiny model answers one label to every pair (its [CLS] states barely differ): the tagging tests below
    # compare predictions that vary.
    assert list(predicted) == [row["prediction"] for row in evaluated]
    # The run's URI names the same model.
    again = mlflow.pyfunc.load_model(f"runs:/{target_id}/{model.name}")
    assert list(again.predict(pd.DataFrame(pairs[:3], columns=["text_a", "text_b"]))) == list(predicted[:3])

    with pytest.raises(XstiltsInputError, match="input row 0: no column text_b; a xnli model reads the columns "
                                                "text_a, text_b"):
        loaded.predict(pd.DataFrame({"text_a": ["Ein Satz."]}))


def panx_sentences(lang: str, ids: list[int]) -> list[list[str]]:
    """The words of the PAN-X dev sentences at `ids` (0-based), read from the bundle's CoNLL-style file."""
    sentences, words = [], []
    for line in (data_root() / f"xtreme/download/panx/dev-{lang}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            words.append(line.split("\t")[0])
        elif words:
            sentences.append(words)
            words = []
    if words:
        sentences.append(words)
    return [sentences[index] for index in ids]


def panx_rows(evaluate_id: str, langs: tuple[str, ...]) -> tuple[list[dict], list[list[str]]]:
    """The PAN-X items an evaluate run scored in `langs`, as MLflow model input rows (words read from the bundle,
    `lang`), and the tags evaluate predicted for them (its tables)."""
    params = MlflowClient().get_run(evaluate_id).data.params
    rows, expected = [], []
    for lang in langs:
        assert params[f"eval_split/panx/{lang}"] == "dev"  # the bundle has PAN-X dev files, no test files
        [table] = [entry.path for entry in MlflowClient().list_artifacts(evaluate_id, "predictions/panx")
                   if entry.path.startswith(f"predictions/panx/dev-{lang}") and entry.path.endswith(".table.json")]
        evaluated = prediction_rows(evaluate_id, table.removeprefix("predictions/"))
        rows += [{"tokens": words, "lang": lang} for words in panx_sentences(lang, [row["id"] for row in evaluated])]
        expected += [row["prediction"].split(" ") for row in evaluated]
    assert len({tag for tags in expected for tag in tags}) > 1, "the comparison needs words the model tells apart"
    return rows, expected


def test_a_full_fine_tuning_run_s_model_predicts_as_evaluate_did(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir)])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,de", "--max-eval-examples", "4"])
    assert code == 0, out
    rows, expected = panx_rows(run_id_of(out, "evaluate"), ("en", "de"))
    loaded = mlflow.pyfunc.load_model(f"models:/{logged_model(target_id).model_id}")
    assert loaded.predict(pd.DataFrame(rows)) == expected


def test_a_madx_run_s_model_swaps_language_adapters_by_the_lang_column(tracking_store, tiny_model_dir):
    english, swahili = (train_lang_adapter(tiny_model_dir, lang) for lang in ("en", "sw"))
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), "--method", "madx",
                                     "--lang-adapter-run-id", english])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,sw", "--max-eval-examples", "3",
                                       "--lang-adapter-runs", swahili])
    assert code == 0, out
    rows, expected = panx_rows(run_id_of(out, "evaluate"), ("en", "sw"))
    model = logged_model(target_id)
    loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}",
                                      model_config={"pyfunc/langs": "en,sw", "pyfunc/lang_adapter_runs": swahili})
    assert loaded.predict(pd.DataFrame(rows)) == expected
    # By default the model is ready for the source language only (rows without `lang` are in it), and says how to
    # load another.
    english_only = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    assert english_only.predict(pd.DataFrame(rows[:3]).drop(columns="lang")) == expected[:3]
    with pytest.raises(XstiltsInputError, match="no language adapter loaded for sw: load the model with model_config"):
        english_only.predict(pd.DataFrame(rows))


QA_ROWS = [{"id": "q1", "question": "Where does the river flow?",
            "context": "The river flows into the sea near Hamburg."},
           {"id": "q2", "question": "Who wrote the letter?", "context": "Anna wrote the letter in the evening."}]
CHOICE_ROWS = [{"context": "The man broke his toe.", "question": "What was the cause?",
                "choices": ["He dropped a hammer on his foot.", "He went to the cinema."]},
               {"context": "It started to rain.", "question": "What happened as a result?",
                "choices": ["We opened our umbrellas.", "The sun was hot."]}]


@pytest.mark.parametrize("task, auto_model, rows, gold", [
    ("xquad", AutoModelForQuestionAnswering, QA_ROWS,
     [{"answers": {"text": ["into the sea"], "answer_start": [16]}},
      {"answers": {"text": ["Anna"], "answer_start": [0]}}]),
    ("xcopa", AutoModelForMultipleChoice, CHOICE_ROWS, [{"label": 0}, {"label": 0}]),
])
def test_qa_and_multiple_choice_rows_are_predicted_as_evaluate_predicts_labelled_examples(tiny_model_dir, task,
                                                                                          auto_model, rows, gold):
    """The model-from-code's input handling for the task types without a trained run in the tests above: rows
    without gold give the predictions that evaluation gives the same items with their gold."""
    spec = get_task(task)
    torch.manual_seed(0)
    model, tokenizer = auto_model.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    labels = model_labels(model)
    examples = [{**row, **answer, "lang": "en"} for row, answer in zip(rows, gold)]
    evaluated = evaluate_language(spec, model, tokenizer, examples, labels, max_length=64, batch_size=2).predictions
    predicted = predict_rows(spec, model, tokenizer, lambda lang: None, [dict(row) for row in rows], "en",
                             max_length=64, batch_size=2)
    assert predicted == evaluated
    if task == "xquad":
        assert [question for question, _ in predicted] == ["q1", "q2"]
        assert all(answer in row["context"] for (_, answer), row in zip(predicted, rows))

"""Dual-encoder retrieval (LAReQA, Mewsli-X): loaders, the multilingual pool and its scoring worked out by hand, the
English training pairs, the target -> evaluate chain on the tiny model, and the bad-input boundary."""

import json

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from components import dual_encoder
from components.data import english_sentence_breaks, load_split, training_stages
from components.errors import XstiltsInputError
from components.metrics import map_at_k, mewslix_map_at_20
from components.settings import DATA_ROOT_ENV
from components.tasks import get_task
from pipelines import evaluate, target
from test_entry_points import all_runs, assert_clean_failure, invoke, run_id_of

LAREQA, MEWSLIX = get_task("lareqa"), get_task("mewslix")
XD = "xtreme/download"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path, document):
    return write(path, json.dumps(document, ensure_ascii=False))


def write_jsonl(path, records):
    return write(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


# --- LAReQA (XQuAD-R) ---------------------------------------------------------------------------------------------

def xquad_r(lang: str) -> dict:
    """One paragraph of two sentences; q1's answer starts the first sentence, q2's lies in the second."""
    first, second = f"Alpha {lang} opens here.", f"Beta {lang} closes two."
    context = f"{first} {second}"
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{
        "context": context, "sentences": [first, second],
        "sentence_breaks": [[0, len(first)], [len(first) + 1, len(context)]],
        "qas": [{"id": "q1", "question": f"Where does alpha {lang} open?",
                 "answers": [{"text": "Alpha", "answer_start": 0}]},
                {"id": "q2", "question": f"What does beta {lang} close?",
                 "answers": [{"text": "two", "answer_start": context.index("two")}]}]}]}]}


def write_lareqa(root):
    for lang in LAREQA.langs:
        write_json(root / f"{XD}/lareqa/xquad-r/{lang}.json", xquad_r(lang))


def test_xquad_r_question_retrieves_the_sentence_holding_its_answer_start(tmp_path):
    write_json(tmp_path / f"{XD}/lareqa/xquad-r/de.json", xquad_r("de"))
    first, second = load_split(LAREQA, "test", "de", tmp_path)
    context = "Alpha de opens here. Beta de closes two."
    candidates = [("de_1_0", f"Alpha de opens here. {context}"), ("de_1_1", f"Beta de closes two. {context}")]
    assert first == {"id": "q1", "query": "Where does alpha de open?", "answer_id": "de_1_0",
                     "answer": candidates[0][1], "candidates": candidates, "lang": "de"}
    assert (second["answer_id"], second["answer"]) == candidates[1]


@pytest.mark.parametrize("breaks, answer_start, message", [
    ([[0, 20], [21, 40]], 20, r"data\[0\].paragraphs\[0\], question 'q1': expected an `id`, a `question` and one "
                              r"answer whose `answer_start` lies in a sentence"),
    ([[0, 20], [21, 99]], 0, r"data\[0\].paragraphs\[0\]: expected a `context` string and `sentence_breaks`"),
    (None, 0, r"data\[0\].paragraphs\[0\]: expected a `context` string and `sentence_breaks`"),
])
def test_malformed_xquad_r_names_file_and_place(tmp_path, breaks, answer_start, message):
    document = xquad_r("de")
    paragraph = document["data"][0]["paragraphs"][0]
    paragraph["sentence_breaks"], paragraph["qas"][0]["answers"][0]["answer_start"] = breaks, answer_start
    path = write_json(tmp_path / f"{XD}/lareqa/xquad-r/de.json", document)
    with pytest.raises(XstiltsInputError, match=f"{path}: {message}"):
        load_split(LAREQA, "test", "de", tmp_path)


def test_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path / f"{XD}/lareqa/xquad-r/de.json", '{"data": [\n{"paragraphs": }]}')
    with pytest.raises(XstiltsInputError, match=f"{path}:2: not valid JSON"):
        load_split(LAREQA, "test", "de", tmp_path)


def test_bundle_xquad_r_has_1190_questions_per_language_and_13014_candidates():
    data = dual_encoder.load_retrieval_data(LAREQA, ["en"])
    assert len(data.queries["en"]) == 1190  # the data README and LAReQA's own table
    assert len(data.candidates) == 13014  # 852 (th) to 1,276 (de) sentences per language, 11 languages
    question = data.queries["en"][0]
    assert question["query"] == "How many points did the Panthers defense surrender?"
    assert question["answer"].startswith("The Panthers defense gave up just 308 points")
    # The answer sentence in every language is relevant: 11 targets, one per language.
    assert sorted(data.relevant[question["id"]]) == sorted(f"{lang}_1_0" for lang in LAREQA.langs)


def test_the_pool_and_the_relevant_answers_span_every_language(tmp_path):
    write_lareqa(tmp_path)
    data = dual_encoder.load_retrieval_data(LAREQA, ["de", "th"], root=tmp_path)
    assert list(data.queries) == ["de", "th"] and [q["id"] for q in data.queries["th"]] == ["q1", "q2"]
    assert len(data.candidates) == 22  # 2 sentences x 11 languages, whatever languages are scored
    assert data.relevant["q2"] == {f"{lang}_1_1" for lang in LAREQA.langs}


# Hand-made unit vectors: the cosine similarity of two of them is their dot product.
VECTORS = {"qen": (1.0, 0.0), "qde": (0.0, 1.0),
           "Aen": (1.0, 0.0), "Ben": (0.8, 0.6), "Ade": (0.6, 0.8), "Bde": (0.0, 1.0)}


def embed_by_first_word(texts):
    return np.array([VECTORS[text.split()[0]] for text in texts])


def test_lareqa_average_precision_at_20_by_hand():
    # One question ("q") in English and German; its answer is sentence A in both, B is a wrong sentence.
    queries = {lang: [{"id": "q", "query": f"q{lang}", "answer_id": f"A-{lang}", "lang": lang}] for lang in ("en", "de")}
    data = dual_encoder.RetrievalData(queries=queries, relevant={"q": {"A-en", "A-de"}}, candidates=[
        ("A-en", "Aen context"), ("B-en", "Ben context"), ("A-de", "Ade context"), ("B-de", "Bde context")],
        test_sizes={"en": 1, "de": 1})
    results = dual_encoder.score(data, embed_by_first_word)
    # English query (1, 0): A-en 1.0, B-en 0.8, A-de 0.6, B-de 0: targets at ranks 1 and 3, AP = (1/1 + 2/3) / 2.
    # German query (0, 1): B-de 1.0, A-de 0.8, B-en 0.6, A-en 0: targets at ranks 2 and 4, AP = (1/2 + 2/4) / 2.
    assert results["en"].metrics == {"map_at_20": pytest.approx(100 * 5 / 6)}
    assert results["de"].metrics == {"map_at_20": pytest.approx(50.0)}
    [file] = results["de"].predictions
    assert file.name == "test-de.json"
    assert json.loads(file.content) == {"q": ["B-de", "A-de", "B-en", "A-en"]}
    assert (results["de"].n_examples, results["de"].details) == (1, {"candidates": 4})


def test_top_candidates_cut_at_20_and_break_ties_by_pool_order():
    candidates = np.array([[1.0, 0.0]] * 25)  # 25 candidates equally similar to the query
    assert dual_encoder.top_candidates(np.array([[2.0, 0.0]]), candidates).tolist() == [list(range(20))]


def test_selection_ranks_the_distinct_answers_of_the_selection_pairs():
    # Three pairs, two sharing answer "a" (one candidate). Queries 1 and 2 rank a first (AP 1); query 3 ranks a (0.8)
    # above its own b (0.6): AP 1/2. Mean (1 + 1 + 1/2) / 3.
    queries = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6]])
    answers = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # the second "a" row is ignored: first one counts
    assert dual_encoder.selection_map(queries, answers, ["a", "a", "b"]) == {"map_at_20": pytest.approx(250 / 3)}


# --- Mewsli-X ----------------------------------------------------------------------------------------------------

SENTENCE_ONE, SENTENCE_TWO = "Smith {Jr} resigned.", "The verdict came back for Smith, who stepped down."
ARTICLE = f"{SENTENCE_ONE}\n{SENTENCE_TWO}"


def context(language: str, text: str = ARTICLE) -> dict:
    return {"document_id": "d1", "document_url": "u", "document_title": "t", "language": language, "text": text,
            "sentence_spans": [{"start": 0, "end": len(SENTENCE_ONE)},
                               {"start": len(SENTENCE_ONE) + 1, "end": len(ARTICLE)}]}


def mention(example_id: str, entity_id: str, start: int, text: str = "Smith") -> dict:
    return {"example_id": example_id, "entity_id": entity_id,
            "mention_span": {"start": start, "end": start + len(text), "text": text}}


def entity(entity_id: str, description: str) -> dict:
    return {"entity_id": entity_id, "title": entity_id, "description": description, "description_language": "en",
            "description_url": "u", "sentence_spans": [{"start": 0, "end": len(description)}]}


def write_mewslix(root):
    second_smith = ARTICLE.index("Smith", 1)
    write_jsonl(root / f"{XD}/mewslix/wikinews_mentions-test.jsonl", [
        {"context": context("en"), "mentions": [mention("en-1", "Q1", 0), mention("en-2", "Q2", second_smith)]},
        {"context": context("de"), "mentions": [mention("de-1", "Q2", 0)]},
    ])
    write_jsonl(root / f"{XD}/mewslix/candidate_set_entities.jsonl",
                [entity(qid, f"Entity {qid}.\nSecond  line.") for qid in ("Q1", "Q2", "Q3")])
    pairs = [{"contextual_mention": {"context": context("en"), "mention": mention(f"w-{i}", qid, 0)},
              "entity": entity(qid, f"Entity {qid}.")} for i, qid in enumerate(("Q1", "Q2", "Q3", "Q4"))]
    write_jsonl(root / f"{XD}/mewslix/wikipedia_pairs-train.jsonl", pairs[:3])
    write_jsonl(root / f"{XD}/mewslix/wikipedia_pairs-dev.jsonl", pairs[3:])


def test_mewslix_mention_in_its_sentence_as_xtreme_preprocesses_it(tmp_path):
    write_mewslix(tmp_path)
    first, second = load_split(MEWSLIX, "test", "en", tmp_path)
    # The mention's own sentence only; braces already there become parentheses.
    assert first == {"id": "en-1", "query": "Smith: { Smith } (Jr) resigned.", "answer_id": "Q1", "answer": "",
                     "lang": "en"}
    assert second["query"] == "Smith: The verdict came back for { Smith } , who stepped down."
    assert [example["id"] for example in load_split(MEWSLIX, "test", "de", tmp_path)] == ["de-1"]
    # Training pairs carry their entity's description.
    assert load_split(MEWSLIX, "train", "en", tmp_path)[2] == {
        "id": "w-2", "query": "Smith: { Smith } (Jr) resigned.", "answer_id": "Q3", "answer": "Entity Q3.", "lang": "en"}


def test_mewslix_mentions_rank_the_candidate_set(tmp_path):
    write_mewslix(tmp_path)
    data = dual_encoder.load_retrieval_data(MEWSLIX, ["en"], root=tmp_path)
    # Descriptions lose their newline and double space, as XTREME's preprocess_entity_description.
    assert data.candidates == [(qid, f"Entity {qid}. Second line.") for qid in ("Q1", "Q2", "Q3")]
    vectors = {"Smith: { Smith } (Jr) resigned.": (1.0, 0.0), "Smith: The verdict came back for { Smith } , who "
               "stepped down.": (0.0, 1.0), "Entity Q1. Second line.": (0.0, 1.0),
               "Entity Q2. Second line.": (0.6, 0.8), "Entity Q3. Second line.": (0.8, 0.6)}
    result = dual_encoder.score(data, lambda texts: np.array([vectors[text] for text in texts]))["en"]
    [file] = result.predictions
    assert (file.name, file.n_items, file.split_items) == ("test-en.json", 2, 2)
    predictions = json.loads(file.content)
    # en-1 (1, 0): Q3 0.8, Q2 0.6, Q1 0 -> gold Q1 at rank 3; en-2 (0, 1): Q1 1.0, Q2 0.8 -> gold Q2 at rank 2.
    assert predictions == {"en-1": ["Q3", "Q2", "Q1"], "en-2": ["Q1", "Q2", "Q3"]}
    assert result.metrics == {"map_at_20": pytest.approx(100 * (1 / 3 + 1 / 2) / 2)}
    assert result.metrics == mewslix_map_at_20(predictions, {"en-1": ["Q1"], "en-2": ["Q2"]})


@pytest.mark.parametrize("record, message", [
    ({"context": context("en")}, r"missing or malformed field \(KeyError: 'mentions'\); expected a Mewsli-X"),
    ({"context": context("en"), "mentions": [mention("en-1", "Q1", 3)]},
     r"mention en-1: mention_span text 'Smith' is not context.text\[3:8\]"),
    ({"context": context("en", ""), "mentions": [mention("en-1", "Q1", 0)]},
     r"mention en-1: mention_span text 'Smith' is not context.text\[0:5\] \(''\); WikiNews texts must be restored"),
    ({"context": context("en"), "mentions": [mention("en-1", "Q1", 0, ARTICLE[:25])]},
     r"mention en-1: span 0-25 lies in no single sentence"),
])
def test_malformed_mewslix_rows_name_file_and_line(tmp_path, record, message):
    path = write_jsonl(tmp_path / f"{XD}/mewslix/wikinews_mentions-test.jsonl",
                       [{"context": context("en"), "mentions": []}, record])
    with pytest.raises(XstiltsInputError, match=f"{path}:2: {message}"):
        load_split(MEWSLIX, "test", "en", tmp_path)


def test_a_scored_language_without_mentions_is_named(tmp_path):
    write_mewslix(tmp_path)
    with pytest.raises(XstiltsInputError, match="mewslix test has no queries in es, ja; choose languages with langs"):
        dual_encoder.load_retrieval_data(MEWSLIX, ["en", "es", "ja"], root=tmp_path)


def test_missing_candidate_set_is_named(tmp_path):
    write_mewslix(tmp_path)
    (tmp_path / f"{XD}/mewslix/candidate_set_entities.jsonl").unlink()
    with pytest.raises(XstiltsInputError, match="missing candidate file.*candidate_set_entities.jsonl"):
        dual_encoder.load_retrieval_data(MEWSLIX, ["en"], root=tmp_path)


# --- English training pairs --------------------------------------------------------------------------------------

def test_english_sentence_breaks_skip_abbreviations_and_initials():
    text = 'Dr. Smith met J. Doe in St. Louis. "Why?" he asked.[3]:12 In Jan. 2010 it rained! 5 fell.'
    assert [text[start:end] for start, end in english_sentence_breaks(text)] == [
        "Dr. Smith met J. Doe in St. Louis. ", '"Why?" he asked.[3]:12 ', "In Jan. 2010 it rained! ", "5 fell."]


def tydiqa_train(n: int) -> dict:
    paragraphs = [{"context": f"Town{i} lies on a river. Its mayor is Mayor{i}.", "qas": [
        {"id": str(i), "question": f"Who is the mayor of Town{i}?",
         "answers": [{"text": f"Mayor{i}", "answer_start": len(f"Town{i} lies on a river. Its mayor is ")}]}]}
        for i in range(n)]
    return {"version": "TyDiQA-GoldP-1.1-for-SQuAD-1.1", "data": [{"paragraphs": paragraphs}]}


def test_lareqa_trains_on_tydiqa_questions_and_their_answer_sentences(tmp_path):
    write_json(tmp_path / f"{XD}/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", tydiqa_train(5))
    (stage,) = training_stages(LAREQA, "standard", "en", tmp_path, train_source="tydiqa", select_holdout=2)
    context = "Town4 lies on a river. Its mayor is Mayor4."
    assert stage.select[-1] == {"id": "4", "query": "Who is the mayor of Town4?", "lang": "en",
                                "answer_id": f"Its mayor is Mayor4. {context}", "answer": f"Its mayor is Mayor4. {context}"}
    assert (len(stage.train), stage.params["train_source"], stage.params["select_source"]) == (3, "tydiqa",
                                                                                              "tydiqa train")
    assert stage.params["train_source_conversion"].startswith("question -> answer sentence + paragraph")


def test_dual_encoder_loss_is_the_in_batch_softmax(tiny_model_dir):
    model = dual_encoder.DualEncoder.from_pretrained(str(tiny_model_dir))
    ids, mask = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    output = model(ids, mask, ids.flip(0), mask.flip(0))
    queries, answers = output["query_embeddings"], output["answer_embeddings"]
    assert torch.allclose(queries.norm(dim=-1), torch.ones(2))
    logits = 100 * queries @ answers.T  # row i's answer is candidate i, the other row's a negative
    expected = -(logits.log_softmax(dim=-1).diagonal()).mean()
    assert output["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


# --- Entry points on the tiny model ------------------------------------------------------------------------------

TINY = ["--epochs", "1", "--batch-size", "4", "--max-length", "32"]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def lareqa_target(tracking_store, tiny_model_dir, data_root):
    write_json(data_root / f"{XD}/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", tydiqa_train(12))
    write_lareqa(data_root)
    code, out = invoke(target.main, ["--task", "lareqa", "--train-source-override", "tydiqa", "--select-holdout", "4",
                                     "--model", str(tiny_model_dir), *TINY])
    assert code == 0, out
    return run_id_of(out, "target")


def test_lareqa_chain_scores_the_prediction_files_it_writes(lareqa_target):
    params = MlflowClient().get_run(lareqa_target).data.params
    assert (params["train_source_override"], params["train_source"], params["select_source"]) == \
        ("tydiqa", "tydiqa", "tydiqa train")
    assert "select/lareqa/en/map_at_20" in MlflowClient().get_run(lareqa_target).data.metrics
    code, out = invoke(evaluate.main, ["--train-run-id", lareqa_target])
    assert code == 0, out
    run = MlflowClient().get_run(run_id_of(out, "evaluate"))
    assert (run.info.status, run.data.params["train_run_id"], run.data.params["pooling"]) == \
        ("FINISHED", lareqa_target, "mean")
    for lang in LAREQA.langs:
        predicted = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/predictions/lareqa/test-{lang}.json"))
        assert set(predicted) == {"q1", "q2"} and all(len(ranked) == 20 for ranked in predicted.values())
        relevant = {question: {f"{other}_1_{sentence}" for other in LAREQA.langs}
                    for question, sentence in (("q1", 0), ("q2", 1))}
        assert run.data.metrics[f"eval/lareqa/{lang}/map_at_20"] == pytest.approx(
            map_at_k(predicted, relevant)["map_at_20"])
    code, out = invoke(evaluate.main, ["--train-run-id", lareqa_target, "--langs", "de", "--max-eval-examples", "1"])
    assert code == 0, out
    capped_id = run_id_of(out, "evaluate")
    # The first of the 2 German questions: the file name says so.
    assert set(json.loads(mlflow.artifacts.load_text(f"runs:/{capped_id}/predictions/lareqa/test-de.1-of-2.json"))
               ) == {"q1"}


def test_lareqa_from_an_encoder_without_task_training(tracking_store, tiny_model_dir, data_root):
    write_lareqa(data_root)
    code, out = invoke(evaluate.main, ["--retrieval-task", "lareqa", "--encoder-model", str(tiny_model_dir),
                                       "--langs", "en,th"])
    assert code == 0, out
    run = MlflowClient().get_run(run_id_of(out, "evaluate"))
    assert {key for key in run.data.metrics if key.startswith("eval/")} == {
        "eval/lareqa/en/map_at_20", "eval/lareqa/th/map_at_20"}
    assert run.data.params["max_length"] == "128" and run.data.params["intermediate_task"] == "none"
    assert run.data.metrics["eval_details/lareqa/th/candidates"] == 22


def test_mewslix_chain_trains_on_wikipedia_pairs_and_ranks_the_candidate_set(tracking_store, tiny_model_dir,
                                                                            data_root):
    write_mewslix(data_root)
    code, out = invoke(target.main, ["--task", "mewslix", "--model", str(tiny_model_dir), *TINY])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    assert MlflowClient().get_run(target_id).data.params["n_select_examples"] == "1"  # wikipedia_pairs-dev
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,de"])
    assert code == 0, out
    evaluate_id = run_id_of(out, "evaluate")
    predicted = json.loads(mlflow.artifacts.load_text(f"runs:/{evaluate_id}/predictions/mewslix/test-de.json"))
    assert set(predicted) == {"de-1"} and sorted(predicted["de-1"]) == ["Q1", "Q2", "Q3"]
    assert MlflowClient().get_run(evaluate_id).data.metrics["eval/mewslix/de/map_at_20"] == pytest.approx(
        mewslix_map_at_20(predicted, {"de-1": ["Q2"]})["map_at_20"])


def test_malformed_training_row_fails_the_target_run(tracking_store, tiny_model_dir, data_root):
    write_mewslix(data_root)
    path = data_root / f"{XD}/mewslix/wikipedia_pairs-train.jsonl"
    write(path, path.read_text(encoding="utf-8") + '{"contextual_mention": {"context": {}}}\n')
    code, out = invoke(target.main, ["--task", "mewslix", "--model", str(tiny_model_dir), *TINY])
    assert_clean_failure(code, out, f"{path}:4: missing or malformed field")
    assert [run.info.status for run in all_runs()] == ["FAILED"]


def test_malformed_test_file_fails_evaluate_before_its_run_starts(lareqa_target, data_root):
    path = write(data_root / f"{XD}/lareqa/xquad-r/th.json", '{"data": [{"paragraphs": [{"context": "x"}]}]}')
    code, out = invoke(evaluate.main, ["--train-run-id", lareqa_target])
    assert_clean_failure(code, out, f"{path}: data\\[0\\].paragraphs\\[0\\]: expected a `context` string")
    assert sorted(run.info.status for run in all_runs()) == ["FINISHED"]  # the target run alone: every language's
    # data is read before the evaluate run starts


def test_lareqa_without_english_selection_data_asks_for_a_holdout(tracking_store, tiny_model_dir, data_root):
    write_json(data_root / f"{XD}/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", tydiqa_train(12))
    code, out = invoke(target.main, ["--task", "lareqa", "--train-source-override", "tydiqa",
                                     "--model", str(tiny_model_dir), *TINY])
    assert_clean_failure(code, out, "cannot load lareqa dev \\[en\\].*pass select_holdout=N")

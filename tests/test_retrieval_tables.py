"""Retrieval evaluate runs log a prediction table beside each XTREME-layout file: one row per scored query with its
gold and its retrieved candidate, consistent with the logged score. Expectations come from the bundle's Tatoeba files,
the small BUCC and LAReQA sets written by test_retrieval_eval and test_dual_encoder, and the prediction files."""

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from components import settings
from components.data import load_split
from components.predictions import retrieval_table
from pipelines import evaluate
from tests.test_dual_encoder import LAREQA, data_root, write_lareqa  # noqa: F401 (fixture)
from tests.test_entry_points import invoke, run_id_of
from tests.test_retrieval_eval import (BUCC_EN, BUCC_GOLD, BUCC_ZH, TEST_ID_OFFSET, bucc_root,  # noqa: F401 (fixture)
                                       load_pairs, run_bucc, write_bucc)

N_PAIRS = 40


def table_rows(run_id: str, table_file: str) -> list[dict]:
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/predictions/{table_file}"))
    assert table["columns"] == ["id", "query", "gold_id", "gold", "retrieved_id", "retrieved", "correct"]
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def test_a_tatoeba_table_holds_each_query_with_its_aligned_line_and_its_retrieved_one(tracking_store,
                                                                                      tiny_model_dir):
    code, out = invoke(evaluate.main, ["--retrieval-task", "tatoeba", "--encoder-model", str(tiny_model_dir),
                                       "--langs", "de", "--max-pairs", str(N_PAIRS)])
    assert code == 0, out
    run_id = run_id_of(out, "evaluate")
    rows = table_rows(run_id, f"tatoeba/test-de.{N_PAIRS}-of-1000.tsv.table.json")
    folder = settings.data_root() / "xtreme/download/tatoeba"
    german = (folder / "de-en.de").read_text(encoding="utf-8").split("\n")
    english = (folder / "de-en.en").read_text(encoding="utf-8").split("\n")
    prediction_file = f"runs:/{run_id}/predictions/tatoeba/test-de.{N_PAIRS}-of-1000.tsv"
    retrieved = [int(line) for line in mlflow.artifacts.load_text(prediction_file).split()]
    assert [row["id"] for row in rows] == list(range(N_PAIRS))
    assert [row["query"] for row in rows] == english[:N_PAIRS]
    assert [(row["gold_id"], row["gold"]) for row in rows] == [(str(index), german[index]) for index in range(N_PAIRS)]
    assert [(row["retrieved_id"], row["retrieved"]) for row in rows] == [(str(index), german[index])
                                                                          for index in retrieved]
    accuracy = MlflowClient().get_run(run_id).data.metrics["eval/tatoeba/de/accuracy"]
    assert sum(row["correct"] for row in rows) / N_PAIRS == pytest.approx(accuracy / 100)
    assert 0 < accuracy < 100, "the comparison needs right and wrong retrievals"


def test_correct_means_only_gold_retrieved_and_nothing_where_there_is_no_gold():
    table = retrieval_table([0, 1, 2, 3, 4], ["q0", "q1", "q2", "q3", "q4"],
                            [{"a": "A"}, {"a": "A", "b": "B"}, {}, {}, {"a": "A"}],
                            [{"a": "A"}, {"b": "B"}, {}, {"c": "C"}, {"a": "A", "c": "C"}])
    assert table["correct"] == [True, True, True, False, False]
    assert (table["gold_id"][1], table["gold"][1]) == ("a,b", "A ‖ B")


def test_a_bucc_table_holds_each_source_sentence_in_a_gold_or_a_kept_pair(tracking_store, tiny_model_dir,
                                                                          bucc_root):
    write_bucc(bucc_root, "test", "not a gold file\n", first_id=1 + TEST_ID_OFFSET)  # test gold is withheld
    run = run_bucc(tiny_model_dir)
    kept = load_pairs(run, "dev-zh.tsv")
    rows = table_rows(run.info.run_id, "bucc2018/dev-zh.tsv.table.json")
    sources = sorted({src for src, _ in BUCC_GOLD | kept}, key=lambda sentence_id: int(sentence_id[3:]))
    # The bundle-like files number sentences from 1 (`write_bucc`): zh-<n> is at position n - 1.
    assert [f"zh-{row['id'] + 1}" for row in rows] == sources
    assert [row["query"] for row in rows] == [BUCC_ZH[row["id"]] for row in rows]

    def partners(pairs, src):
        return sorted(en for source, en in pairs if source == src)

    assert [row["gold_id"].split(",") if row["gold_id"] else [] for row in rows] == \
        [partners(BUCC_GOLD, src) for src in sources]
    assert [row["retrieved_id"].split(",") if row["retrieved_id"] else [] for row in rows] == \
        [partners(kept, src) for src in sources]
    assert [row["gold"] for row in rows if row["gold_id"]] == [BUCC_EN[int(row["gold_id"][3:]) - 1]
                                                              for row in rows if row["gold_id"]]
    assert sum(row["correct"] for row in rows) == len({src for src, _ in BUCC_GOLD & kept})
    # The test file's pairs are unscored: no table.
    assert {entry.path for entry in MlflowClient().list_artifacts(run.info.run_id, "predictions/bucc2018")} == {
        f"predictions/bucc2018/{name}" for name in ("dev-zh.tsv", "dev-zh.tsv.table.json", "test-zh.tsv",
                                                    "manifest.json")}


def test_a_lareqa_table_holds_each_question_with_its_answers_in_every_language_and_its_top_1(
        tracking_store, tiny_model_dir, data_root):
    write_lareqa(data_root)
    code, out = invoke(evaluate.main, ["--retrieval-task", "lareqa", "--encoder-model", str(tiny_model_dir),
                                       "--langs", "de"])
    assert code == 0, out
    run_id = run_id_of(out, "evaluate")
    rows = table_rows(run_id, "lareqa/test-de.json.table.json")
    ranked = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/predictions/lareqa/test-de.json"))
    # Every language's sentence holding the answer is relevant (test_dual_encoder): <lang>_1_<sentence index>.
    relevant = {question: sorted(f"{lang}_1_{sentence}" for lang in LAREQA.langs)
                for question, sentence in (("q1", 0), ("q2", 1))}
    texts = dict(candidate for lang in LAREQA.langs for candidate in load_split(LAREQA, "test", lang)[0]["candidates"])
    assert [(row["id"], row["query"]) for row in rows] == [(0, "Where does alpha de open?"),
                                                           (1, "What does beta de close?")]
    assert [row["gold_id"].split(",") for row in rows] == [relevant["q1"], relevant["q2"]]
    assert [row["gold"] for row in rows] == [" ‖ ".join(texts[answer] for answer in relevant[question])
                                             for question in ("q1", "q2")]
    assert [(row["retrieved_id"], row["retrieved"]) for row in rows] == [(ranked[question][0],
                                                                          texts[ranked[question][0]])
                                                                         for question in ("q1", "q2")]
    assert [row["correct"] for row in rows] == [ranked[question][0] in relevant[question]
                                                for question in ("q1", "q2")]

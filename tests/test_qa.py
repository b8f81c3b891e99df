"""Extractive QA: striding, span post-processing, scorer choice, and the QA chain end to end on the tiny model.

A word-level tokenizer (one token per whitespace word) makes every token position countable by hand:
a window of max_length 16 is `<s> q </s> </s>` + 11 context words + `</s>`, and the doc stride is 16 // 4 = 4.
"""

import collections
import json
import re
import string

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from components.data import load_split
from components.tasks import get_task
from components.task_types import handler_for
from pipelines import evaluate, target
from tests.test_entry_points import FAST, invoke, run_id_of

WORDS = [f"w{i}" for i in range(20)]
CONTEXT = " ".join(WORDS)  # "w0 w1 ... w19": w0..w9 take 3 characters with their space, so w9 starts at 27
EXAMPLE = {"id": "q1", "question": "q", "context": CONTEXT, "lang": "en",
           "answers": {"text": ["w9 w10 w11"], "answer_start": [27]}}
QA = handler_for(get_task("xquad"))


@pytest.fixture(scope="module")
def word_tokenizer():
    vocab = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "q", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>")


def test_long_context_is_strided_and_the_answer_is_found_in_the_window_that_holds_it(word_tokenizer):
    features = QA.encode([EXAMPLE], word_tokenizer, 16, ())
    # Windows of 11 words overlapping by 4: w0-w10, w7-w17, w14-w19. Only the second holds all of w9 w10 w11, at
    # positions 4 + (9 - 7) = 6 to 8; the others point at the CLS token.
    assert [len(feature["input_ids"]) for feature in features] == [16, 16, 11]
    assert [(f["start_positions"], f["end_positions"]) for f in features] == [(0, 0), (6, 8), (0, 0)]
    assert [f["example_index"] for f in features] == [0, 0, 0]
    second = features[1]["offset_mapping"]
    assert second[:4] == [None] * 4 and second[-1] is None  # <s> q </s> </s> ... </s>
    assert second[4] == (21, 23)  # w7


def test_collator_passes_only_model_inputs(word_tokenizer):
    batch = QA.collator(word_tokenizer)(QA.encode([EXAMPLE], word_tokenizer, 16, ()))
    assert set(batch) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert batch["input_ids"].shape == (3, 16)


def logits_with(length: int, start: dict[int, float], end: dict[int, float]) -> np.ndarray:
    row = np.zeros((length, 2))
    for position, value in start.items():
        row[position, 0] = value
    for position, value in end.items():
        row[position, 1] = value
    return row


def test_best_span_over_windows_is_the_original_context_text(word_tokenizer):
    features = QA.encode([EXAMPLE], word_tokenizer, 16, ())
    logits = [
        logits_with(16, {5: 2.0}, {5: 2.0}),  # w1 alone, score 4
        logits_with(16, {6: 3.0}, {8: 3.0}),  # w9 w10 w11, score 6: the best
        logits_with(11, {4: 1.0}, {9: 1.0}),  # w14..w19, score 2
    ]
    assert QA.decode(logits, features, [EXAMPLE], ()) == [("q1", "w9 w10 w11")]


def test_spans_outside_the_context_or_reversed_are_rejected(word_tokenizer):
    features = QA.encode([EXAMPLE], word_tokenizer, 16, ())[:1]
    # The highest start is the question token (position 1), the highest end precedes the next start: neither pair
    # is valid, so the best valid pair is start 7 (w3), end 9 (w5).
    logits = [logits_with(16, {1: 9.0, 7: 2.0, 10: 5.0}, {1: 9.0, 9: 4.0})]
    assert QA.decode(logits, features, [EXAMPLE], ()) == [("q1", "w3 w4 w5")]


def test_spans_longer_than_30_tokens_are_rejected():
    offsets = [None] + [(3 * i, 3 * i + 2) for i in range(40)]  # 40 context "words" of 2 characters
    context = " ".join(f"{i:02d}" for i in range(40))
    features = [{"offset_mapping": offsets, "example_index": 0}]
    # Start at word 0 and end at word 30 would be 31 tokens; the best allowed span ends at word 29 instead.
    logits = [logits_with(41, {1: 5.0}, {31: 5.0, 30: 1.0})]
    assert QA.decode(logits, features, [{"id": "x", "context": context}], ()) == [("x", context[:89])]
    assert context[:89].split()[-1] == "29"


def test_a_window_without_context_answers_empty():
    features = [{"offset_mapping": [None] * 4, "example_index": 0}]
    assert QA.decode([logits_with(4, {1: 5.0}, {2: 5.0})], features, [{"id": "x", "context": "abc"}], ()) == [("x", "")]


@pytest.mark.parametrize("task, exact_match, f1", [
    # gold "gato", prediction "el gato": MLQA drops Spanish articles (EM 100); SQuAD keeps "el": precision 1/2,
    # recall 1, F1 2 * 0.5 / 1.5.
    ("mlqa", 100.0, 100.0),
    ("xquad", 0.0, 200 / 3),
])
def test_scorer_follows_the_task_spec(task, exact_match, f1):
    example = {"id": "a", "lang": "es", "answers": {"text": ["gato"], "answer_start": [0]}}
    metrics = handler_for(get_task(task)).score([example], [("a", "el gato")])
    assert metrics == pytest.approx({"exact_match": exact_match, "f1": f1})


UNANSWERABLE = {**EXAMPLE, "id": "q2", "answers": {"text": [], "answer_start": []}}  # SQuAD v2 on the Hub


def test_an_unanswerable_question_trains_towards_the_cls_token_in_every_window(word_tokenizer):
    features = handler_for(get_task("squad_v2")).encode([UNANSWERABLE], word_tokenizer, 16, ())
    assert [(f["start_positions"], f["end_positions"]) for f in features] == [(0, 0), (0, 0), (0, 0)]


def test_an_unanswerable_question_is_scored_against_the_empty_answer():
    # As SQuAD v2's evaluate-v2.0.py, the gold is "": an empty prediction matches it exactly, a span does not.
    squad_v2 = handler_for(get_task("squad_v2"))
    assert squad_v2.score([UNANSWERABLE], [("q2", "")])["exact_match"] == 100.0
    assert squad_v2.score([UNANSWERABLE], [("q2", "w1")]) == {"exact_match": 0.0, "f1": 0.0}


def test_prediction_file_is_the_xtreme_json():
    assert json.loads(QA.prediction_file([("a", "Zürich"), ("b", "")])) == {"a": "Zürich", "b": ""}


def test_scoring_goes_by_position_when_ids_repeat():
    # The bundle's TyDiQA-GoldP English train repeats ids ("0" 1,651 times): a held-out selection slice must still
    # score every question. One of two is right: EM 50 (dicts keyed by id would keep one question and give 0).
    examples = [{"id": "0", "lang": "en", "answers": {"text": [text], "answer_start": [0]}} for text in ("a b", "c")]
    assert QA.score(examples, [("0", "a b"), ("0", "wrong")])["exact_match"] == 50.0


def official_squad_em_f1(gold: dict[str, list[str]], predictions: dict[str, str]) -> tuple[float, float]:
    """SQuAD v1.1 `evaluate` (evaluate-v1.1.py), restated here independently of components.metrics."""
    def normalize(text):
        text = "".join(char for char in text.lower() if char not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())

    def f1(prediction, truth):
        common = collections.Counter(prediction.split()) & collections.Counter(truth.split())
        same = sum(common.values())
        if same == 0:
            return 0.0
        precision, recall = same / len(prediction.split()), same / len(truth.split())
        return 2 * precision * recall / (precision + recall)

    em = sum(max(normalize(predictions[q]) == normalize(a) for a in answers) for q, answers in gold.items())
    f = sum(max(f1(normalize(predictions[q]), normalize(a)) for a in answers) for q, answers in gold.items())
    return 100 * em / len(gold), 100 * f / len(gold)


def test_xquad_chain_trains_on_tydiqa_and_scores_the_files_it_writes(tracking_store, tiny_model_dir):
    # The tiny tokenizer cuts an XQuAD paragraph into ~50 windows of 64 tokens (60k per language, 80 s on 2 cores):
    # the first 80 questions of each language keep the test under a minute.
    code, out = invoke(target.main, ["--task", "xquad", "--train-source-override", "tydiqa", "--select-holdout", "32",
                                     "--model", str(tiny_model_dir), *FAST])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    params = MlflowClient().get_run(target_id).data.params
    assert (params["train_source"], params["train_source_override"], params["select_source"]) == \
        ("tydiqa", "tydiqa", "tydiqa train")
    assert params["protocol_select_items"] == "3664-3695"
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,de", "--max-eval-examples", "80"])
    assert code == 0, out
    evaluate_id = run_id_of(out, "evaluate")
    metrics = MlflowClient().get_run(evaluate_id).data.metrics
    for lang in ("en", "de"):
        # The first 80 of the 1,190 questions (bundle README): the file name says so.
        predicted = json.loads(mlflow.artifacts.load_text(
            f"runs:/{evaluate_id}/predictions/xquad/test-{lang}.80-of-1190.json"))
        gold = {example["id"]: example["answers"]["text"]
                for example in load_split(get_task("xquad"), "test", lang)[:80]}
        assert set(predicted) == set(gold) and len(gold) == 80
        assert all(isinstance(answer, str) for answer in predicted.values())
        exact_match, f1 = official_squad_em_f1(gold, predicted)
        assert metrics[f"eval/xquad/{lang}/exact_match"] == pytest.approx(exact_match)
        assert metrics[f"eval/xquad/{lang}/f1"] == pytest.approx(f1)

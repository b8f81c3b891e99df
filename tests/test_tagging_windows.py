"""Tagging reads sentences longer than `max_length` in windows and predicts every word: the predictions are checked
against the model run by hand, on each word alone or on each window."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForTokenClassification

from components.errors import XstiltsInputError
from components.evaluation import evaluate_language
from components.task_types import IGNORED_LABEL, handler_for
from components.tasks import UPOS_LABELS, get_task

UDPOS = get_task("udpos")


def read_tags(prediction_file: str) -> list[list[str]]:
    return [block.split("\n") for block in prediction_file.strip("\n").split("\n\n")]


def tagger(tokenizer, layers: int, seed: int = 0) -> XLMRobertaForTokenClassification:
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=37, max_position_embeddings=140, pad_token_id=1,
                              num_labels=len(UPOS_LABELS))
    return XLMRobertaForTokenClassification(config).eval()


def context_free_tagger(tokenizer) -> XLMRobertaForTokenClassification:
    """No layer and no position or segment embedding: a token's logits depend on its id alone, in any window."""
    model = tagger(tokenizer, layers=0)
    with torch.no_grad():
        model.roberta.embeddings.position_embeddings.weight.zero_()
        model.roberta.embeddings.token_type_embeddings.weight.zero_()
    return model


def first_subword_tag(model, tokenizer, word: str) -> str:
    """The model's tag for `word` read alone: the logits of its first sub-word, after the leading special token."""
    inputs = tokenizer([word], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        return UPOS_LABELS[int(model(**inputs).logits[0, 1].argmax())]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def long_sentence(tokenizer):
    """About 3 x 16 sub-words of English, several words of more than one sub-word, tagged with every UPOS tag."""
    words = ("The new rules , which the committee approved on Tuesday after months of debate , will require every "
             "member state to report its emissions twice a year and to publish the figures online").split()
    tags = [UPOS_LABELS[index % len(UPOS_LABELS)] for index in range(len(words))]
    return {"tokens": words, "tags": tags, "lang": "en"}


def subword_counts(tokenizer, words):
    return [len(tokenizer(word, add_special_tokens=False)["input_ids"]) for word in words]


def test_every_word_of_a_sentence_three_times_max_length_gets_the_models_prediction(tokenizer, long_sentence):
    words, max_length = long_sentence["tokens"], 16
    assert sum(subword_counts(tokenizer, words)) >= 3 * max_length and max(subword_counts(tokenizer, words)) > 1
    model = context_free_tagger(tokenizer)
    expected = [first_subword_tag(model, tokenizer, word) for word in words]
    # The words a single window of 16 would cut off are not all predicted as the first label (ADJ) by this model.
    assert set(expected[max_length:]) - {UPOS_LABELS[0]}
    result = evaluate_language(UDPOS, model, tokenizer, [long_sentence], UPOS_LABELS, max_length, batch_size=3)
    assert read_tags(result.prediction_file) == [expected]


def test_each_word_is_predicted_in_the_window_where_it_has_the_most_context(tokenizer):
    # 30 words of one sub-word each and max_length 10: windows of 10 - 2 special tokens = 8 words, each next one
    # starting with the last max_length // 2 = 5 words of the one before (3 words on).
    pieces = [piece for piece in tokenizer.convert_ids_to_tokens(range(len(tokenizer)))
              if piece.startswith("▁") and piece[1:].isalpha()]
    words = [piece[1:] for piece in pieces if subword_counts(tokenizer, [piece[1:]]) == [1]][:30]
    assert len(words) == 30
    windows = [(0, 8), (3, 11), (6, 14), (9, 17), (12, 20), (15, 23), (18, 26), (21, 29), (24, 30)]
    # Context of word w in window [s, e): min(w - s, e - 1 - w), the first window on a tie. Word 5: [0, 8) gives
    # min(5, 2) = 2, [3, 11) min(2, 5) = 2 -> [0, 8). Word 6: [0, 8) min(6, 1) = 1, [3, 11) min(3, 4) = 3 -> [3, 11).
    # So [0, 8) predicts words 0-5, each middle window the 3 words from its start + 3, and [24, 30) words 27-29.
    predicted_by = {0: range(0, 6), **{index: range(start + 3, start + 6) for index, (start, _) in
                                       enumerate(windows[1:-1], start=1)}, 8: range(27, 30)}
    assert sorted(word for scored in predicted_by.values() for word in scored) == list(range(30))
    model = tagger(tokenizer, layers=2)
    expected = [None] * 30
    for index, (start, end) in enumerate(windows):
        inputs = tokenizer(words[start:end], is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0]
        for word in predicted_by[index]:
            expected[word] = UPOS_LABELS[int(logits[1 + word - start].argmax())]
    sentence = {"tokens": words, "tags": ["NOUN"] * 30, "lang": "en"}
    result = evaluate_language(UDPOS, model, tokenizer, [sentence], UPOS_LABELS, max_length=10, batch_size=4)
    assert read_tags(result.prediction_file) == [expected]


def test_training_features_label_every_word_once_with_its_gold_tag(tokenizer, long_sentence):
    short = {"tokens": ["a", "short", "one"], "tags": ["DET", "ADJ", "NOUN"], "lang": "en"}
    features = handler_for(UDPOS).encode([long_sentence, short], tokenizer, 16, UPOS_LABELS)
    assert all(len(feature["input_ids"]) <= 16 for feature in features)
    labelled = {}
    for feature in features:
        tag_ids = [tag for tag in feature["labels"] if tag != IGNORED_LABEL]
        assert len(tag_ids) == len(feature["scored_words"])
        for word, tag in zip(feature["scored_words"], tag_ids):
            assert (feature["example_index"], word) not in labelled
            labelled[(feature["example_index"], word)] = UPOS_LABELS[tag]
    gold = {(index, word): tag for index, example in enumerate([long_sentence, short])
            for word, tag in enumerate(example["tags"])}
    assert labelled == gold
    assert [feature["example_index"] for feature in features].count(1) == 1  # a sentence that fits: one window


def test_selection_scores_every_word_of_the_selection_examples(tokenizer, long_sentence):
    # Gold tags = the model's own tag for each word: selection must score 100, every word decoded from its window
    # out of the logits the Trainer hands (every window's, padded with -100 to the longest).
    model, handler, max_length = context_free_tagger(tokenizer), handler_for(UDPOS), 16
    example = {**long_sentence, "tags": [first_subword_tag(model, tokenizer, word) for word in long_sentence["tokens"]]}
    assert set(example["tags"][max_length:]) - {UPOS_LABELS[0]}
    features = handler.encode([example], tokenizer, max_length, UPOS_LABELS)
    batch = handler.collator(tokenizer)(features)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.numpy()
    padded = np.where(batch["attention_mask"].numpy()[..., None] == 1, logits, -100.0)
    scores = handler.selection_metrics(padded, batch["labels"].numpy(), features, [example], UPOS_LABELS)
    assert (scores["f1"], scores["token_accuracy"]) == (100.0, 100.0)


def test_a_word_without_subwords_is_read_as_the_unknown_token(tokenizer):
    model = context_free_tagger(tokenizer)
    sentence = {"tokens": ["the", "", "rules"], "tags": ["DET", "X", "NOUN"], "lang": "en"}
    assert subword_counts(tokenizer, [""]) == [0]
    result = evaluate_language(UDPOS, model, tokenizer, [sentence], UPOS_LABELS, 16, batch_size=1)
    expected = [first_subword_tag(model, tokenizer, word) for word in ("the", tokenizer.unk_token, "rules")]
    assert read_tags(result.prediction_file) == [expected]


def test_max_length_without_room_for_a_word_is_refused(tokenizer):
    with pytest.raises(XstiltsInputError, match="max_length 2 leaves no room for a word beside the tokenizer's 2 "
                                                "special tokens"):
        handler_for(UDPOS).encode([{"tokens": ["a"], "tags": ["DET"], "lang": "en"}], tokenizer, 2, UPOS_LABELS)

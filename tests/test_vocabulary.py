"""Vocabulary trimming: the rows kept, the renumbered inputs, and training that ends where untrimmed training does."""

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, TrainerCallback

from components.data import training_stages
from components.errors import XstiltsInputError
from components.models import resolve_model
from components.tasks import get_task
from components.training import TrainConfig, load_task_model, train
from components.vocabulary import TrimmedVocabulary

XNLI = get_task("xnli")


def test_kept_rows_are_the_used_and_special_tokens_renumbered_in_order_with_padding_in_place():
    features = [{"input_ids": [0, 57, 9, 2], "attention_mask": [1, 1, 1, 1], "labels": 3},
                {"input_ids": [[0, 9, 2], [0, 40, 2]], "labels": 1},  # multiple choice: one sequence per choice
                {"input_ids": [0, 12, 2], "answer_input_ids": [0, 80, 2]}]  # dual encoder: the answer side too
    vocabulary = TrimmedVocabulary.of([features], special_ids=[0, 2, 3, 99], pad_id=1, vocab_size=100)
    assert vocabulary.kept_ids.tolist() == [0, 1, 2, 3, 9, 12, 40, 57, 80, 99]
    renumbered = vocabulary.renumber(features)
    assert renumbered[0] == {"input_ids": [0, 7, 4, 2], "attention_mask": [1, 1, 1, 1], "labels": 3}
    assert renumbered[1]["input_ids"] == [[0, 4, 2], [0, 6, 2]]
    assert (renumbered[2]["input_ids"], renumbered[2]["answer_input_ids"]) == ([0, 5, 2], [0, 8, 2])
    assert features[0]["input_ids"] == [0, 57, 9, 2]  # the caller's features are left as they were


def test_ids_beyond_the_model_vocabulary_are_refused():
    with pytest.raises(ValueError, match="outside the model's vocabulary of 50"):
        TrimmedVocabulary.of([[{"input_ids": [0, 50]}]], special_ids=[0], pad_id=1, vocab_size=50)


def test_restore_writes_the_trained_rows_back_and_leaves_every_other_row(tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir)
    before = model.get_input_embeddings().weight.detach().clone()
    vocabulary = TrimmedVocabulary.of([[{"input_ids": [0, 5, 7, 2]}]], special_ids=[0, 2, 3], pad_id=1,
                                      vocab_size=before.shape[0])
    full = vocabulary.shrink(model)
    trimmed = model.get_input_embeddings()
    assert trimmed.num_embeddings == 6 and torch.equal(trimmed.weight[4], before[5])  # kept: 0, 1, 2, 3, 5, 7
    with torch.no_grad():
        trimmed.weight[4] += 1.0
    vocabulary.restore(model, full)
    after = model.get_input_embeddings().weight.detach()
    assert after.shape == before.shape
    assert torch.equal(after[5], before[5] + 1.0)
    unchanged = [row for row in range(before.shape[0]) if row != 5]
    assert torch.equal(after[unchanged], before[unchanged])


class EmbeddingRows(TrainerCallback):
    """How many word-embedding rows the model holds while it trains."""

    def __init__(self):
        self.rows = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.rows.append(model.get_input_embeddings().num_embeddings)


@pytest.mark.parametrize("freeze", [True, False])
def test_trimmed_training_ends_where_untrimmed_training_does(tiny_model_dir, tmp_path, freeze):
    # Without weight decay, rows that no input uses get no update in either run: the two must agree everywhere.
    settings = dict(epochs=1, batch_size=16, max_length=32, max_train_examples=48, max_select_examples=32,
                    weight_decay=0.0, freeze_word_embeddings=freeze)
    stages = training_stages(XNLI, "dev-split", "en")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    probe = EmbeddingRows()
    plain, trimmed = (train(XNLI, resolve_model(str(tiny_model_dir)), tokenizer, stages, "en",
                            TrainConfig(**settings, trim_vocabulary=trim), tmp_path / str(trim),
                            callbacks_for=lambda _: [probe])
                      for trim in (False, True))
    vocab_size = len(tokenizer)
    assert probe.rows[0] == vocab_size and 4 < probe.rows[1] < vocab_size
    assert trimmed.select_metrics == pytest.approx(plain.select_metrics)
    plain_state, trimmed_state = plain.model.state_dict(), trimmed.model.state_dict()
    assert plain_state.keys() == trimmed_state.keys()
    for name, value in plain_state.items():
        torch.testing.assert_close(trimmed_state[name], value, rtol=1e-5, atol=1e-6, msg=name)
    untrained = load_task_model(XNLI, resolve_model(str(tiny_model_dir))).get_input_embeddings().weight
    embeddings = trimmed.model.get_input_embeddings().weight
    assert embeddings.shape == untrained.shape and torch.equal(embeddings, untrained) == freeze
    assert embeddings.requires_grad == (not freeze)


def test_trimming_is_refused_for_adapter_methods(tiny_model_dir, tmp_path):
    with pytest.raises(XstiltsInputError, match="trim_vocabulary is for full fine-tuning"):
        train(XNLI, resolve_model(str(tiny_model_dir)), AutoTokenizer.from_pretrained(tiny_model_dir),
              training_stages(XNLI, "dev-split", "en"), "en", TrainConfig(trim_vocabulary=True), tmp_path,
              setup_model=lambda model: None)

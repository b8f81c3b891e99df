"""Tests of pooled embeddings, cosine retrieval and Tatoeba scoring; integration runs the real offline encoder."""

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from components import models, offline_model, retrieval
from components.errors import XstiltsInputError

TATOEBA_LANG = "de"
TATOEBA_PAIRS = 300


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert retrieval.pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert retrieval.pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


def test_nearest_neighbour_uses_cosine_not_dot_product():
    queries = np.array([[1.0, 0.0], [0.0, 2.0]])
    candidates = np.array([[0.0, 5.0], [3.0, 0.1], [10.0, 10.0]])
    assert retrieval.nearest_neighbour(queries, candidates).tolist() == [1, 0]


def test_tatoeba_accuracy_counts_queries_that_retrieve_their_own_index():
    assert retrieval.tatoeba_accuracy(np.array([0, 1, 3, 2])) == 50.0


def test_read_aligned_pairs_keeps_alignment_and_applies_the_limit(tmp_path):
    src, en = tmp_path / "x.de", tmp_path / "x.en"
    src.write_text("Hallo\u2028Welt\r\nTschüss\n", encoding="utf-8")
    en.write_text("Hello world\nBye\n", encoding="utf-8")
    assert retrieval.read_aligned_pairs(src, en) == (["Hallo\u2028Welt", "Tschüss"], ["Hello world", "Bye"])
    assert retrieval.read_aligned_pairs(src, en, limit=1) == (["Hallo\u2028Welt"], ["Hello world"])


@pytest.mark.parametrize(
    "src_text, en_text, expected",
    [
        (None, "a\n", "x.de: file not found"),
        ("a\nb\n", "a\n", "x.de has 2 lines but .*x.en has 1"),
        ("", "", "are empty"),
    ],
)
def test_read_aligned_pairs_rejects_bad_files(tmp_path, src_text, en_text, expected):
    src, en = tmp_path / "x.de", tmp_path / "x.en"
    if src_text is not None:
        src.write_text(src_text, encoding="utf-8")
    en.write_text(en_text, encoding="utf-8")
    with pytest.raises(XstiltsInputError, match=expected):
        retrieval.read_aligned_pairs(src, en)


def test_tatoeba_pairs_follow_the_task_registry(tmp_path):
    folder = tmp_path / "xtreme/download/tatoeba"
    folder.mkdir(parents=True)
    (folder / "de-en.de").write_text("Hallo\nJa\n", encoding="utf-8")
    (folder / "de-en.en").write_text("Hello\nYes\n", encoding="utf-8")
    assert retrieval.tatoeba_pairs("de", limit=1, root=tmp_path) == (["Hallo"], ["Hello"])
    with pytest.raises(XstiltsInputError, match="unknown language 'xx'"):
        retrieval.tatoeba_pairs("xx", root=tmp_path)


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_dir):
    resolved = models.resolve_model(str(tiny_model_dir))
    return models.load_model(resolved), models.load_tokenizer(resolved)


def test_embed_is_independent_of_batching_and_restores_input_order(tiny_encoder):
    model, tokenizer = tiny_encoder
    texts = ["a much longer sentence than the others, with a clause", "short", "a middle sized one", "x"]
    batched = retrieval.embed(model, tokenizer, texts, layer=1, batch_size=3, prefix="query: ")
    one_by_one = np.stack([retrieval.embed(model, tokenizer, [t], layer=1, prefix="query: ")[0] for t in texts])
    assert batched.shape == (4, 32)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"layer": 3}, "layer 3 is out of range"),
        ({"pooling": "max"}, "unknown pooling 'max'"),
        ({"batch_size": 0}, "batch_size must be a positive"),
    ],
)
def test_embed_rejects_bad_options(tiny_encoder, options, expected):
    with pytest.raises(XstiltsInputError, match=expected):
        retrieval.embed(*tiny_encoder, ["text"], **options)


def test_embed_leaves_a_training_model_in_training_mode(tiny_encoder):
    model, tokenizer = tiny_encoder
    model.train()
    first, second = (retrieval.embed(model, tokenizer, ["same text"]) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert model.training
    model.eval()


@pytest.fixture(scope="module")
def e5_tatoeba():
    """The converted multilingual-e5-small, its tokenizer and its E5 prefix, with the first German Tatoeba pairs."""
    resolved = models.resolve_model(offline_model.MODEL_NAME)
    pairs = retrieval.tatoeba_pairs(TATOEBA_LANG, limit=TATOEBA_PAIRS)
    return models.load_model(resolved), models.load_tokenizer(resolved), resolved.spec, pairs


@pytest.mark.integration
def test_offline_e5_retrieves_german_tatoeba_translations(e5_tatoeba, record_property):
    model, tokenizer, spec, (src, en) = e5_tatoeba
    accuracy = retrieval.retrieval_accuracy(model, tokenizer, src, en, prefix=spec.retrieval_prefix,
                                            pooling=spec.pooling, layer=spec.retrieval_layer)
    record_property("tatoeba_de_accuracy", accuracy)
    assert accuracy >= 95.0


@pytest.mark.integration
def test_randomly_initialised_control_fails_the_same_retrieval(e5_tatoeba, record_property):
    model, tokenizer, spec, (src, en) = e5_tatoeba
    torch.manual_seed(0)
    control = AutoModel.from_config(AutoConfig.from_pretrained(model.name_or_path))
    accuracy = retrieval.retrieval_accuracy(control, tokenizer, src, en, prefix=spec.retrieval_prefix,
                                            pooling=spec.pooling, layer=spec.retrieval_layer)
    record_property("tatoeba_de_random_control_accuracy", accuracy)
    assert accuracy < 30.0

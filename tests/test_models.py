"""Tests of the model registry: names, local folders, and clear errors instead of network access."""

import pytest
from transformers import XLMRobertaModel, XLMRobertaTokenizerFast

from components import models, offline_model
from components.errors import XstiltsInputError
from components.retrieval import POOLINGS


def test_unknown_name_lists_the_registered_models():
    with pytest.raises(XstiltsInputError) as error:
        models.resolve_model("xlm-roberta-huge")
    message = str(error.value)
    assert "'xlm-roberta-huge'" in message and "config.json" in message
    assert all(name in message for name in models.MODELS)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(XstiltsInputError, match="config.json"):
        models.resolve_model(str(tmp_path))


def test_local_model_folder_is_used_as_is(tiny_model_dir):
    resolved = models.resolve_model(str(tiny_model_dir))
    assert resolved.name == resolved.path_or_hub_id == str(tiny_model_dir)
    assert not resolved.from_hub and resolved.spec.retrieval_prefix == ""
    assert isinstance(models.load_model(resolved), XLMRobertaModel)
    assert isinstance(models.load_tokenizer(resolved), XLMRobertaTokenizerFast)


def test_hub_models_resolve_to_their_hub_id_without_loading():
    resolved = models.resolve_model("xlm-roberta-large")
    assert (resolved.name, resolved.path_or_hub_id) == ("xlm-roberta-large", "xlm-roberta-large")
    assert resolved.from_hub
    assert resolved.spec.retrieval_layer == 14


def test_hub_model_that_cannot_be_fetched_raises_an_input_error(tmp_path):
    resolved = models.resolve_model("xlm-roberta-base")
    with pytest.raises(XstiltsInputError, match="'xlm-roberta-base'.*network access.*local model folder"):
        models.load_tokenizer(resolved, cache_dir=tmp_path, local_files_only=True)


def test_registry_specs_are_consistent():
    assert models.MODELS[offline_model.MODEL_NAME].retrieval_prefix == "query: "
    assert all(spec.pooling in POOLINGS for spec in models.MODELS.values())
    assert all(spec.hub_id or spec.name == offline_model.MODEL_NAME for spec in models.MODELS.values())


@pytest.mark.integration
def test_offline_model_resolves_to_its_converted_folder():
    resolved = models.resolve_model(offline_model.MODEL_NAME)
    assert resolved.path_or_hub_id == str(offline_model.ensure_converted()) and not resolved.from_hub
    assert models.load_tokenizer(resolved)("Hello world")["input_ids"] == [0, 35378, 8999, 2]

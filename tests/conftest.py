"""Shared fixtures: a tiny randomly initialised XLM-R (with a tiny trained tokenizer) and a temporary tracking store."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import mlflow
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

import components.data
from components.settings import data_root

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _tiny_tokenizer(corpus: list[str]) -> XLMRobertaTokenizerFast:
    """A 600-piece Unigram tokenizer with XLM-R's special tokens and templates, trained on `corpus`."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS,
                                                                  unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return XLMRobertaTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=128)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny XLM-R encoder (hidden 32, 2 layers) and tokenizer: loads like any Hugging Face folder."""
    lines = (data_root() / "xtreme/download/xnli/dev-en.tsv").read_text(encoding="utf-8").splitlines()[:400]
    lines += (data_root() / "xtreme/download/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()[:400]
    tokenizer = _tiny_tokenizer(lines)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=37, max_position_embeddings=140, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2)
    folder = tmp_path_factory.mktemp("tiny-xlmr")
    XLMRobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A fresh SQLite tracking store (MLflow 3's default kind), with artifacts under tmp_path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def loaded_splits(monkeypatch):
    """Every (task, split, language) the data layer loads during the test, in order."""
    loads = []
    real_load_split = components.data.load_split

    def spy(spec, split, lang, root=None):
        loads.append((spec.name, split, lang))
        return real_load_split(spec, split, lang, root)

    monkeypatch.setattr(components.data, "load_split", spy)
    return loads

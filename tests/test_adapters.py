"""MAD-X building blocks on the tiny model: language-adapter MLM training, task adapters stacked on language adapters,
the swap at evaluation, saving and reloading, and the checks that keep an adapter on its own base model."""

import json
import subprocess
import sys

import pytest
import torch
from adapters import Stack
from safetensors.torch import load_file
from transformers import (AutoModelForMaskedLM, AutoModelForTokenClassification, AutoTokenizer, XLMRobertaConfig,
                          XLMRobertaModel)

from components.adapters import (LANG, AdapterModel, LangAdapterConfig, MaskedPositionsLM, TaskAdapterTraining,
                                 bottleneck_size, load_task_adapter_model, task_adapter_name, train_language_adapter)
from components.corpus import build_corpus, studied_tasks
from components.data import training_stages
from components.errors import XstiltsInputError
from components.models import resolve_model
from components.settings import PROJECT_ROOT
from components.tasks import get_task
from components.training import TrainConfig, load_task_model, train

PANX = get_task("panx")
TINY_MLM = LangAdapterConfig(max_steps=3, batch_size=8, max_length=32)
TINY_TASK = TrainConfig(epochs=1, batch_size=16, max_length=32, max_train_examples=48)


def tiny_texts(lang: str) -> list[str]:
    return build_corpus(lang, "bundle", studied_tasks("all")).capped(64, seed=0).texts


@pytest.fixture(scope="module")
def lang_adapters(tiny_model_dir, tmp_path_factory):
    """English and Swahili language adapters trained on the tiny model: {lang: (result, adapter folder)}."""
    base, tokenizer = resolve_model(str(tiny_model_dir)), AutoTokenizer.from_pretrained(tiny_model_dir)
    trained = {}
    for lang in ("en", "sw"):
        result = train_language_adapter(base, "tiny", tokenizer, tiny_texts(lang), lang, TINY_MLM,
                                         tmp_path_factory.mktemp(f"lang-{lang}"))
        trained[lang] = result
    return trained


@pytest.fixture(scope="module")
def task_adapter(tiny_model_dir, lang_adapters, tmp_path_factory):
    """A PAN-X task adapter and head trained on Stack(lang_en, task_panx); returns (setup, trained model, folders)."""
    stages = training_stages(PANX, "target-dev", "en", select_holdout=32)
    setup = TaskAdapterTraining("panx", "tiny", 8, lang_adapters["en"].adapter_dir)
    out = tmp_path_factory.mktemp("task")
    result = train(PANX, resolve_model(str(tiny_model_dir)), AutoTokenizer.from_pretrained(tiny_model_dir), stages,
                   "en", TINY_TASK, out / "trainer", setup_model=setup)
    setup.save(out / "adapter", out / "head", PANX.labels)
    return setup, result, out


def fresh_task_model(tiny_model_dir):
    return load_task_model(PANX, resolve_model(str(tiny_model_dir)))


def sample_inputs(tiny_model_dir) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return dict(tokenizer(["Nairobi ni mji mkuu wa Kenya .", "Berlin is the capital of Germany ."], padding=True,
                          return_tensors="pt"))


def logits(model, inputs) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def test_bottleneck_must_be_a_whole_divisor_of_the_hidden_size():
    assert bottleneck_size(384, 2, "lang adapter") == 192
    assert bottleneck_size(384, 1.5, "task adapter") == 256
    for factor, message in ((5, r"reduction factor 5 does not divide the hidden size 384 .*76\.8"),
                            (512, r"reduction factor 512 .*0\.75"), (0, "must be positive")):
        with pytest.raises(XstiltsInputError, match=message):
            bottleneck_size(384, factor, "task adapter")


def test_language_adapter_training_leaves_the_base_model_bitwise_unchanged(tiny_model_dir, lang_adapters):
    original = XLMRobertaModel.from_pretrained(tiny_model_dir)
    trained = lang_adapters["sw"].model.base_model
    for name, parameter in original.named_parameters():
        if not name.startswith("pooler."):  # the masked-LM model builds no pooler
            assert torch.equal(trained.get_parameter(name), parameter), name
    assert any("adapters.lang_sw" in name for name, _ in trained.named_parameters())


def test_language_adapter_folder_holds_adapter_and_head_apart_without_the_base_model(lang_adapters):
    result = lang_adapters["sw"]
    info = json.loads((result.adapter_dir / "xstilts-adapter.json").read_text())
    assert (info["kind"], info["subject"], info["config"], info["reduction_factor"]) == \
        ("lang", "sw", "seq_bn_inv", 2.0)
    adapter_files = {path.name for path in result.adapter_dir.iterdir()}
    assert adapter_files == {"adapter.safetensors", "adapter_config.json", "xstilts-adapter.json"}
    head = load_file(str(result.head_dir / "head.safetensors"))
    assert head and all(not name.startswith("roberta.") for name in head)
    assert "lm_head.decoder.weight" not in head  # tied to the word embeddings: the base model's, never copied
    assert result.trainable_params < result.total_params


def test_task_adapter_training_trains_only_the_task_adapter_and_head(tiny_model_dir, task_adapter):
    setup, result, _ = task_adapter
    original = fresh_task_model(tiny_model_dir).base_model
    for name, parameter in original.named_parameters():
        assert torch.equal(result.model.base_model.get_parameter(name), parameter), name
    trainable = {name for name, p in result.model.named_parameters() if p.requires_grad}
    assert trainable and all("task_panx" in name or name.startswith("classifier.") for name in trainable)
    assert any("lang_en" in name for name, _ in result.model.named_parameters())  # loaded, frozen


def test_stack_puts_the_language_adapter_first_so_its_invertible_adapter_applies(tiny_model_dir, task_adapter):
    setup, result, _ = task_adapter
    model = result.model
    assert model.adapters_config.active_setup == Stack("lang_en", "task_panx")
    assert model.adapters_config.active_setup.first() == "lang_en"
    invertible = model.base_model.invertible_adapters
    assert "lang_en" in invertible and "task_panx" not in invertible
    inputs = sample_inputs(tiny_model_dir)
    before = logits(model, inputs)
    with torch.no_grad():
        saved = [p.clone() for p in invertible["lang_en"].parameters()]
        for p in invertible["lang_en"].parameters():
            p.add_(0.5)
        changed = logits(model, inputs)
        for p, value in zip(invertible["lang_en"].parameters(), saved):
            p.copy_(value)
    assert not torch.allclose(before, changed)


def test_swapping_the_language_adapter_changes_predictions(tiny_model_dir, lang_adapters, task_adapter):
    _, result, folders = task_adapter
    host, task = load_task_adapter_model(fresh_task_model(tiny_model_dir), "tiny", folders / "adapter",
                                         folders / "head", PANX.labels)
    for lang in ("en", "sw"):
        host.load(lang_adapters[lang].adapter_dir, LANG)
    inputs = sample_inputs(tiny_model_dir)
    host.activate(task, "lang_en")
    english = logits(host.model, inputs)
    assert torch.allclose(english, logits(result.model, inputs), atol=1e-6)  # the reloaded adapter predicts the same
    host.activate(task, "lang_sw")
    swahili = logits(host.model, inputs)
    assert not torch.allclose(english, swahili)
    host.activate(task)
    assert not torch.allclose(english, logits(host.model, inputs))


RELOAD_SCRIPT = """
import sys, torch
from components.adapters import LANG, load_task_adapter_model
from components.models import resolve_model
from components.tasks import get_task
from components.training import load_task_model
from transformers import AutoTokenizer
model_dir, task_dir, lang_dir, out = sys.argv[1:]
spec = get_task("panx")
host, task = load_task_adapter_model(load_task_model(spec, resolve_model(model_dir)), "tiny", task_dir + "/adapter",
                                     task_dir + "/head", spec.labels)
host.activate(task, host.load(lang_dir, LANG).name)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
inputs = tokenizer(["Nairobi ni mji mkuu wa Kenya .", "Berlin is the capital of Germany ."], padding=True,
                   return_tensors="pt")
host.model.eval()
with torch.no_grad():
    torch.save(host.model(**inputs).logits, out)
"""


def test_saved_task_adapter_reproduces_its_predictions_in_a_fresh_process(tiny_model_dir, lang_adapters,
                                                                          task_adapter, tmp_path):
    _, result, folders = task_adapter
    out = tmp_path / "logits.pt"
    subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(tiny_model_dir), str(folders),
                    str(lang_adapters["en"].adapter_dir), str(out)], check=True, cwd=PROJECT_ROOT)
    assert torch.equal(torch.load(out), logits(result.model, sample_inputs(tiny_model_dir)))


def test_an_adapter_of_another_hidden_size_is_refused(lang_adapters, tmp_path):
    config = XLMRobertaConfig(vocab_size=600, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=37, max_position_embeddings=140, pad_token_id=1)
    host = AdapterModel(AutoModelForTokenClassification.from_config(config), "wider")
    with pytest.raises(XstiltsInputError, match="trained for hidden size 32 .* has hidden size 48"):
        host.load(lang_adapters["sw"].adapter_dir, LANG)


def test_an_adapter_of_another_base_model_is_refused(tiny_model_dir, lang_adapters):
    model = fresh_task_model(tiny_model_dir)
    with torch.no_grad():
        model.base_model.encoder.layer[0].output.dense.weight.add_(0.01)  # e.g. an intermediate-fine-tuned encoder
    host = AdapterModel(model, "fine-tuned tiny")
    with pytest.raises(XstiltsInputError, match="trained for another base encoder"):
        host.load(lang_adapters["sw"].adapter_dir, LANG)


def test_a_task_adapter_is_not_loaded_as_a_language_adapter(tiny_model_dir, task_adapter):
    host = AdapterModel(fresh_task_model(tiny_model_dir), "tiny")
    with pytest.raises(XstiltsInputError, match="a task adapter .* expected a lang adapter"):
        host.load(task_adapter[2] / "adapter", LANG)


def test_continuing_a_task_adapter_keeps_its_weights_and_size(tiny_model_dir, lang_adapters, task_adapter):
    folders = task_adapter[2]
    setup = TaskAdapterTraining("udpos", "tiny", 8, lang_adapters["en"].adapter_dir, folders / "adapter")
    model = load_task_model(get_task("udpos"), resolve_model(str(tiny_model_dir)))
    setup(model)
    continued = dict(model.named_parameters())
    trained = dict(task_adapter[1].model.named_parameters())
    for name, parameter in trained.items():
        if "task_panx" in name:
            assert torch.equal(continued[name.replace("task_panx", task_adapter_name("udpos"))], parameter)
    with pytest.raises(XstiltsInputError, match="reduction factor 8; continuing it needs the same"):
        TaskAdapterTraining("udpos", "tiny", 16, None, folders / "adapter")(
            load_task_model(get_task("udpos"), resolve_model(str(tiny_model_dir))))


def test_a_batch_without_masked_positions_has_a_zero_loss_not_nan(tiny_model_dir):
    host = AdapterModel(AutoModelForMaskedLM.from_pretrained(tiny_model_dir), "tiny")
    host.add(LANG, "lang_xx", "xx", 2)
    host.train("lang_xx")
    inputs = sample_inputs(tiny_model_dir)
    loss = MaskedPositionsLM(host)(**inputs, labels=torch.full_like(inputs["input_ids"], -100))["loss"]
    loss.backward()
    assert loss.item() == 0 and all(torch.isfinite(p.grad).all() for p in host.model.parameters() if p.grad is not None)

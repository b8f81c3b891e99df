"""The training options of the GPU path: validation, their Trainer settings, and autocast evaluation."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from components.errors import XstiltsInputError
from components.evaluation import predict_logits
from components.tasks import get_task
from components.task_types import handler_for
from components.training import TrainConfig, _training_arguments


@pytest.mark.parametrize("values, message", [
    ({"precision": "fp8"}, "unknown precision 'fp8': expected one of fp32, bf16, fp16"),
    ({"accumulation_steps": 0}, "accumulation_steps must be positive, got 0"),
])
def test_bad_gpu_options(values, message):
    with pytest.raises(XstiltsInputError, match=message):
        TrainConfig(**values)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_fp16_without_cuda_is_refused():
    with pytest.raises(XstiltsInputError, match="fp16 needs a CUDA GPU"):
        TrainConfig(precision="fp16")


def test_gpu_options_reach_the_trainer(tmp_path):
    args = _training_arguments(get_task("xnli"), TrainConfig(precision="bf16", fused_adamw=True,
                                                             accumulation_steps=4), tmp_path)
    assert (args.bf16, args.fp16, args.optim.value, args.gradient_accumulation_steps) == (
        True, False, "adamw_torch_fused", 4)
    plain = _training_arguments(get_task("xnli"), TrainConfig(), tmp_path)
    assert (plain.bf16, plain.optim.value, plain.gradient_accumulation_steps, plain.torch_compile) == (
        False, "adamw_torch", 1, False)


@pytest.mark.parametrize("settings, checkpoints", [
    ({"epochs": 1}, False), ({"epochs": 0.5}, False), ({"epochs": 2}, True),
    ({"epochs": 1, "evals_per_epoch": 2}, True), ({"epochs": 1, "early_stopping_patience": 1}, True),
])
def test_checkpoints_are_written_only_when_there_is_more_than_one_evaluation_to_choose_from(tmp_path, settings,
                                                                                             checkpoints):
    args = _training_arguments(get_task("xnli"), TrainConfig(**settings), tmp_path)
    expected = ("epoch", True) if checkpoints else ("no", False)
    assert (args.save_strategy.value, args.load_best_model_at_end) == expected
    assert args.save_only_model


def test_bf16_evaluation_agrees_with_fp32(tiny_model_dir):
    spec = get_task("xnli")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    examples = [{"text_a": f"a premise number {i} " * (i % 5 + 1), "text_b": "a hypothesis", "label": "neutral",
                 "lang": "en"} for i in range(12)]
    handler = handler_for(spec)
    features = handler.encode(examples, tokenizer, 64, spec.labels)
    full = np.stack(predict_logits(model, features, handler, tokenizer, batch_size=5))
    half = np.stack(predict_logits(model, features, handler, tokenizer, batch_size=5, precision="bf16"))
    assert half.dtype == np.float32 and not np.array_equal(full, half)  # bf16 really ran: rounding differs
    np.testing.assert_allclose(half, full, atol=0.05)


def test_selection_evaluates_features_in_their_order(tiny_model_dir, tmp_path):
    # QA selection pairs the i-th prediction with the i-th window; length grouping must not reorder evaluation.
    from components.data import TrainingData
    from components.models import resolve_model
    from components.training import StageFeatures, _stage_trainer, load_task_model

    spec = get_task("xnli")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [{"text_a": "word " * (1 + (7 * i) % 40), "text_b": "b", "label": "neutral", "lang": "en"}
                for i in range(60)]
    stage = TrainingData("xnli", examples, examples, {})
    model = load_task_model(spec, resolve_model(str(tiny_model_dir)))
    config = TrainConfig(batch_size=8)
    features = StageFeatures.encode(handler_for(spec), tokenizer, stage, config, spec.labels)
    trainer = _stage_trainer(spec, handler_for(spec), model, tokenizer, features, config, tmp_path, [])
    lengths = [int(batch["attention_mask"][0].sum()) for batch in trainer.get_eval_dataloader()]
    expected = [len(feature["input_ids"]) for feature in handler_for(spec).encode(examples, tokenizer, 128,
                                                                                  spec.labels)][::16]
    assert lengths == expected

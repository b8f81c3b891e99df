"""Zero-shot evaluation: predictions per language, scored with the task type's benchmark metric."""

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from components.data import Example
from components.tasks import TaskSpec
from components.task_types import TaskHandler, handler_for


@dataclass
class LanguageResult:
    metrics: dict[str, float]
    prediction_file: str
    n_examples: int


def _longest_input(feature: dict) -> int:
    ids = feature["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)  # multiple choice nests choices


LABEL_KEYS = ("labels", "start_positions", "end_positions")  # what the collators add for the loss


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def predict_logits(model: torch.nn.Module, features: list[dict], handler: TaskHandler, tokenizer,
                   batch_size: int, precision: str = "fp32") -> list[np.ndarray]:
    """Logits per input, in input order, without padding positions, computed on the model's device.

    Batches are formed over length-sorted inputs so each pads only to its own longest.
    """
    collator = handler.collator(tokenizer)
    order = sorted(range(len(features)), key=lambda index: _longest_input(features[index]))
    outputs = [None] * len(features)
    model.eval()
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(precision), enabled=precision in AUTOCAST_DTYPES)
    with torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            batch_indices = order[start: start + batch_size]
            batch = collator([features[i] for i in batch_indices])
            for key in LABEL_KEYS:
                batch.pop(key, None)
            logits = handler.model_logits(model(**{key: value.to(device) for key, value in batch.items()})).float().cpu().numpy()
            for index, row in zip(batch_indices, logits):
                # Per-token logits (tagging, QA) are cut back to the input's own length; padding is on the right.
                outputs[index] = row[: len(features[index]["input_ids"])] if row.ndim == 2 else row
    return outputs


def evaluate_language(spec: TaskSpec, model: torch.nn.Module, tokenizer, examples: Sequence[Example],
                      labels: Sequence[str], max_length: int, batch_size: int, precision: str = "fp32"
                      ) -> LanguageResult:
    """Scores one language's examples with the benchmark metric of the task."""
    handler = handler_for(spec)
    features = handler.encode(examples, tokenizer, max_length, labels)
    logits = predict_logits(model, features, handler, tokenizer, batch_size, precision)
    predictions = handler.decode(logits, features, examples, labels)
    return LanguageResult(
        metrics=handler.score(examples, predictions),
        prediction_file=handler.prediction_file(predictions),
        n_examples=len(examples),
    )

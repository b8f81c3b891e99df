"""Zero-shot evaluation: predictions per language, scored with the task type's benchmark metric."""

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from components.data import Example
from components.progress import Progress, banner
from components.tasks import TaskSpec
from components.task_types import TaskHandler, handler_for


@dataclass
class LanguageResult:
    metrics: dict[str, float]
    prediction_file: str
    n_examples: int
    predictions: list  # decoded, one per example in order (`components.predictions.prediction_table` reads them)


def _longest_input(feature: dict) -> int:
    ids = feature["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)  # multiple choice nests choices


LABEL_KEYS = ("labels", "start_positions", "end_positions")  # what the collators add for the loss


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def predict_logits(model: torch.nn.Module, features: list[dict], handler: TaskHandler, tokenizer,
                   batch_size: int, precision: str = "fp32", progress_label: str = "") -> list[np.ndarray]:
    """Logits per input, in input order, without padding positions, computed on the model's device.

    Batches are formed over length-sorted inputs so each pads only to its own longest. `progress_label`: show a
    progress bar over the batches under this label (none when empty).
    """
    collator = handler.collator(tokenizer)
    order = sorted(range(len(features)), key=lambda index: _longest_input(features[index]))
    outputs = [None] * len(features)
    model.eval()
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(precision), enabled=precision in AUTOCAST_DTYPES)
    progress = Progress(progress_label, math.ceil(len(order) / batch_size), "batches") if progress_label else None
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
            if progress:
                progress.advance()
    if progress:
        progress.close()
    return outputs


def predict_examples(handler: TaskHandler, model: torch.nn.Module, tokenizer, examples: Sequence[Example],
                     labels: Sequence[str], max_length: int, batch_size: int, precision: str = "fp32",
                     progress_label: str = "") -> list:
    """The decoded prediction of each example, in order: what evaluation scores, and what a logged MLflow model
    (`components.trained_models`) answers."""
    features = handler.encode(examples, tokenizer, max_length, labels)
    logits = predict_logits(model, features, handler, tokenizer, batch_size, precision, progress_label)
    return list(handler.decode(logits, features, examples, labels))


def evaluate_language(spec: TaskSpec, model: torch.nn.Module, tokenizer, examples: Sequence[Example],
                      labels: Sequence[str], max_length: int, batch_size: int, precision: str = "fp32"
                      ) -> LanguageResult:
    """Scores one language's examples with the benchmark metric of the task."""
    handler = handler_for(spec)
    lang = examples[0].get("lang", "?") if examples else "?"
    banner(f"evaluating {spec.name} [{lang}]: {len(examples):,} items, {precision}")
    predictions = predict_examples(handler, model, tokenizer, examples, labels, max_length, batch_size, precision,
                                   progress_label=f"evaluate {spec.name} [{lang}]")
    return LanguageResult(
        metrics=handler.score(examples, predictions),
        prediction_file=handler.prediction_file(predictions),
        n_examples=len(examples),
        predictions=list(predictions),
    )


ENGLISH = "en"
AVERAGES = ("avg", "avg_no_en", "avg_low_resource")


def task_averages(scores: dict[str, dict[str, float]], low_resource_langs: Sequence[str]
                  ) -> dict[str, tuple[tuple[str, ...], dict[str, float]]]:
    """Per average of `AVERAGES`, the languages it is over and each metric's plain mean over them, from the
    scores of the languages a run evaluated (`scores`: language -> metric -> value): all of them, all but English,
    those in `low_resource_langs`. An average with no language is left out."""
    over = {"avg": list(scores), "avg_no_en": [lang for lang in scores if lang != ENGLISH],
            "avg_low_resource": [lang for lang in scores if lang in low_resource_langs]}
    averages = {}
    for name, langs in over.items():
        if langs:
            metrics = scores[langs[0]].keys()
            averages[name] = (tuple(langs), {metric: float(np.mean([scores[lang][metric] for lang in langs]))
                                             for metric in metrics})
    return averages

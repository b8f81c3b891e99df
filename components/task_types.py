"""Code keyed by task type: encoding, model head, decoding, scoring and the prediction file format.

Adding a task of an existing type is a registry entry in `components.tasks`; adding a type is one handler here.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from transformers import AutoModelForSequenceClassification

from components.data import Example
from components.errors import XstiltsInputError
from components.metrics import accuracy
from components.tasks import TaskSpec, TaskType


@dataclass(frozen=True)
class ClassificationHandler:
    """Single-sentence and sentence-pair classification (XNLI, PAWS-X, MNLI, ANLI, QQP, SST-2)."""

    auto_model = AutoModelForSequenceClassification
    prediction_extension = "tsv"

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        label_ids = {label: index for index, label in enumerate(labels)}
        text_b = [example["text_b"] for example in examples] if "text_b" in examples[0] else None
        encoded = tokenizer([example["text_a"] for example in examples], text_b, truncation=True,
                            max_length=max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label_ids[example["label"]]}
            for ids, mask, example in zip(encoded["input_ids"], encoded["attention_mask"], examples)
        ]

    def decode(self, logits: np.ndarray, labels: Sequence[str]) -> list[str]:
        return [labels[index] for index in logits.argmax(axis=-1)]

    def gold(self, examples: Sequence[Example]) -> list[str]:
        return [example["label"] for example in examples]

    def score(self, gold: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
        return accuracy(gold, predictions)

    def prediction_file(self, predictions: Sequence[str]) -> str:
        """XTREME submission format: one label per line, in evaluation order."""
        return "".join(f"{prediction}\n" for prediction in predictions)


HANDLERS = {
    TaskType.PAIR_CLASSIFICATION: ClassificationHandler(),
    TaskType.SINGLE_CLASSIFICATION: ClassificationHandler(),
}


def handler_for(spec: TaskSpec):
    try:
        return HANDLERS[spec.task_type]
    except KeyError:
        supported = ", ".join(sorted(task_type.value for task_type in HANDLERS))
        raise XstiltsInputError(
            f"task {spec.name!r} is of type {spec.task_type.value}, which training and evaluation do not support "
            f"yet (supported: {supported})"
        ) from None

"""Code keyed by task type: encoding, model head, collation, decoding, scoring and the prediction file format.

Adding a task of an existing type is a registry entry in `components.tasks`; adding a type is one handler here.
"""

import json
from typing import Sequence

import numpy as np
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForMultipleChoice,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
)

from components.data import Example
from components.errors import XstiltsInputError
from components.metrics import accuracy, tagging_f1
from components.tasks import TaskSpec, TaskType

IGNORED_LABEL = -100  # the loss and selection skip these positions (special tokens, non-first sub-words)


class ClassificationHandler:
    """Single-sentence and sentence-pair classification (XNLI, PAWS-X, MNLI, ANLI, QQP, SST-2)."""

    auto_model = AutoModelForSequenceClassification
    prediction_extension = "tsv"

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer)

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        label_ids = {label: index for index, label in enumerate(labels)}
        text_b = [example["text_b"] for example in examples] if "text_b" in examples[0] else None
        encoded = tokenizer([example["text_a"] for example in examples], text_b, truncation=True,
                            max_length=max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label_ids[example["label"]]}
            for ids, mask, example in zip(encoded["input_ids"], encoded["attention_mask"], examples)
        ]

    def decode(self, logits: Sequence[np.ndarray], features: Sequence[dict], examples: Sequence[Example],
               labels: Sequence[str]) -> list[str]:
        return [labels[index] for index in np.stack(logits).argmax(axis=-1)]

    def selection_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
        return accuracy(list(label_ids), list(logits.argmax(axis=-1)))

    def gold(self, examples: Sequence[Example]) -> list[str]:
        return [example["label"] for example in examples]

    def score(self, gold: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
        return accuracy(gold, predictions)

    def prediction_file(self, predictions: Sequence[str]) -> str:
        """XTREME submission format: one label per line, in evaluation order."""
        return "".join(f"{prediction}\n" for prediction in predictions)


class TokenClassificationHandler:
    """Tagging (UD-POS, PAN-X, CCG): each word is labelled on its first sub-word; the rest are ignored."""

    auto_model = AutoModelForTokenClassification
    prediction_extension = "tsv"

    def collator(self, tokenizer):
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORED_LABEL)

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        label_ids = {label: index for index, label in enumerate(labels)}
        encoded = tokenizer([example["tokens"] for example in examples], is_split_into_words=True, truncation=True,
                            max_length=max_length)
        features = []
        for index, example in enumerate(examples):
            word_ids = encoded.word_ids(index)
            first_subword = [word is not None and (position == 0 or word_ids[position - 1] != word)
                             for position, word in enumerate(word_ids)]
            features.append({
                "input_ids": encoded["input_ids"][index],
                "attention_mask": encoded["attention_mask"][index],
                "labels": [label_ids[example["tags"][word]] if first else IGNORED_LABEL
                           for word, first in zip(word_ids, first_subword)],
            })
        return features

    def decode(self, logits: Sequence[np.ndarray], features: Sequence[dict], examples: Sequence[Example],
               labels: Sequence[str]) -> list[list[str]]:
        """One tag per word, read at its first sub-word; words cut off by `max_length` get the task's first label
        (`O` for NER), so every sentence keeps its length as the XTREME scorer requires."""
        predictions = []
        for row, feature, example in zip(logits, features, examples):
            tags = [labels[index] for index in row.argmax(axis=-1)[np.asarray(feature["labels"]) != IGNORED_LABEL]]
            predictions.append(tags + [labels[0]] * (len(example["tokens"]) - len(tags)))
        return predictions

    def selection_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
        kept = label_ids != IGNORED_LABEL
        predicted = logits.argmax(axis=-1)
        gold = [[labels[i] for i in row[mask]] for row, mask in zip(label_ids, kept)]
        return tagging_f1(gold, [[labels[i] for i in row[mask]] for row, mask in zip(predicted, kept)])

    def gold(self, examples: Sequence[Example]) -> list[list[str]]:
        return [example["tags"] for example in examples]

    def score(self, gold: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
        return tagging_f1(gold, predictions)

    def prediction_file(self, predictions: Sequence[Sequence[str]]) -> str:
        """XTREME submission format: one tag per line, a blank line after each sentence."""
        return "".join("".join(f"{tag}\n" for tag in tags) + "\n" for tags in predictions)


class MultipleChoiceHandler:
    """Multiple choice (XCOPA, COPA, SocialIQA, HellaSwag, CommonsenseQA, Cosmos QA): one score per choice.

    Each choice is encoded as the pair (context, question + choice) and the head scores it; the label is the index
    of the best choice.
    """

    auto_model = AutoModelForMultipleChoice
    prediction_extension = "jsonl"

    def collator(self, tokenizer):
        padder = DataCollatorForMultipleChoice(tokenizer)
        # The transformers collator pops `labels` out of the feature dicts it is given; copies keep ours intact
        # for the next epoch and for decoding.
        return lambda features: padder([dict(feature) for feature in features])

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        features = []
        for example in examples:
            endings = [f"{example['question']} {choice}".strip() for choice in example["choices"]]
            # Long contexts (Cosmos QA) are cut, never the question and choice; CommonsenseQA has no context.
            texts = ([example["context"]] * len(endings), endings) if example["context"] else (endings,)
            encoded = tokenizer(*texts, truncation="only_first", max_length=max_length)
            features.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                             "labels": example["label"]})
        return features

    def decode(self, logits: Sequence[np.ndarray], features: Sequence[dict], examples: Sequence[Example],
               labels: Sequence[str]) -> list[int]:
        return [int(row.argmax()) for row in logits]

    def selection_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
        return accuracy(list(label_ids), list(logits.argmax(axis=-1)))

    def gold(self, examples: Sequence[Example]) -> list[int]:
        return [example["label"] for example in examples]

    def score(self, gold: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
        return accuracy(gold, predictions)

    def prediction_file(self, predictions: Sequence[int]) -> str:
        """XTREME submission format for XCOPA: JSON lines, each with the predicted `label`."""
        return "".join(json.dumps({"label": prediction}) + "\n" for prediction in predictions)


HANDLERS = {
    TaskType.PAIR_CLASSIFICATION: ClassificationHandler(),
    TaskType.SINGLE_CLASSIFICATION: ClassificationHandler(),
    TaskType.TOKEN_CLASSIFICATION: TokenClassificationHandler(),
    TaskType.MULTIPLE_CHOICE: MultipleChoiceHandler(),
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

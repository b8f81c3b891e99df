"""Code keyed by task type: encoding, model head, collation, decoding, scoring and the prediction file format.

Adding a task of an existing type is a registry entry in `components.tasks`; adding a type is one handler here.
"""

import json
from typing import Sequence

import numpy as np
import torch
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForMultipleChoice,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
)

from components import dual_encoder
from components.data import Example
from components.errors import XstiltsInputError
from components.metrics import accuracy, mlqa_em_f1, squad_em_f1, tagging_f1
from components.tasks import TaskSpec, TaskType

IGNORED_LABEL = -100  # the loss and selection skip these positions (special tokens, non-first sub-words)


class TaskHandler:
    """What every handler shares: the spec it serves and the model output it decodes.

    The interface: `auto_model`, `prediction_extension`, `collator(tokenizer)`, `encode(examples, tokenizer,
    max_length, labels) -> features` (one or more per example), `model_logits(output)`, `decode(logits per feature,
    features, examples, labels) -> predictions`, `selection_metrics(predictions, label_ids, features, examples,
    labels)` (the Trainer's compute_metrics on the selection set), `score(examples, predictions)` and
    `prediction_file(predictions)`.
    """

    def __init__(self, spec: TaskSpec):
        self.spec = spec

    def model_logits(self, output):
        """The logits tensor of a forward pass: (batch, classes), (batch, tokens, tags) or (batch, choices)."""
        return output.logits


class AccuracyHandler(TaskHandler):
    """Handlers whose prediction is one arg-max per example (a label or a choice), scored by accuracy."""

    def selection_metrics(self, logits: np.ndarray, label_ids: np.ndarray, features: Sequence[dict],
                          examples: Sequence[Example], labels: Sequence[str]) -> dict[str, float]:
        return accuracy(list(label_ids), list(logits.argmax(axis=-1)))

    def score(self, examples: Sequence[Example], predictions: Sequence) -> dict[str, float]:
        return accuracy([example["label"] for example in examples], predictions)


class ClassificationHandler(AccuracyHandler):
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

    def prediction_file(self, predictions: Sequence[str]) -> str:
        """XTREME submission format: one label per line, in evaluation order."""
        return "".join(f"{prediction}\n" for prediction in predictions)


class TokenClassificationHandler(TaskHandler):
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

    def selection_metrics(self, logits: np.ndarray, label_ids: np.ndarray, features: Sequence[dict],
                          examples: Sequence[Example], labels: Sequence[str]) -> dict[str, float]:
        kept = label_ids != IGNORED_LABEL
        predicted = logits.argmax(axis=-1)
        gold = [[labels[i] for i in row[mask]] for row, mask in zip(label_ids, kept)]
        return tagging_f1(gold, [[labels[i] for i in row[mask]] for row, mask in zip(predicted, kept)])

    def score(self, examples: Sequence[Example], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
        return tagging_f1([example["tags"] for example in examples], predictions)

    def prediction_file(self, predictions: Sequence[Sequence[str]]) -> str:
        """XTREME submission format: one tag per line, a blank line after each sentence."""
        return "".join("".join(f"{tag}\n" for tag in tags) + "\n" for tags in predictions)


class MultipleChoiceHandler(AccuracyHandler):
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

    def prediction_file(self, predictions: Sequence[int]) -> str:
        """XTREME submission format for XCOPA: JSON lines, each with the predicted `label`."""
        return "".join(json.dumps({"label": prediction}) + "\n" for prediction in predictions)


QA_SCORERS = {
    "squad": lambda gold, predictions, lang: squad_em_f1(gold, predictions),
    "mlqa": mlqa_em_f1,
}
QA_MODEL_INPUTS = ("input_ids", "attention_mask", "start_positions", "end_positions")
N_BEST = 20  # start and end candidates per window, as in the SQuAD reference post-processing
MAX_ANSWER_TOKENS = 30


class ExtractiveQAHandler(TaskHandler):
    """Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): start and end logits over (question, context) windows.

    A context longer than one window is cut into overlapping windows (doc stride `max_length // 4` tokens), so an
    example has one or more features. Each feature keeps its example's index and the character offsets of its
    context tokens (None elsewhere); decoding picks the best-scoring valid span over all windows of an example and
    answers with the original context substring. Predictions are (question id, answer text) pairs in example order:
    scoring goes by position, since some files repeat ids (the bundle's TyDiQA-GoldP English train numbers its
    questions per article).
    """

    auto_model = AutoModelForQuestionAnswering
    prediction_extension = "json"

    def collator(self, tokenizer):
        padder = DataCollatorWithPadding(tokenizer)
        # Offsets and example indices are for decoding only: the model gets its inputs and the answer positions.
        return lambda features: padder([{key: feature[key] for key in QA_MODEL_INPUTS} for feature in features])

    def model_logits(self, output):
        return torch.stack([output.start_logits, output.end_logits], dim=-1)  # (batch, tokens, 2)

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        """One feature per window: model inputs, answer token positions (0, the CLS token, when the first gold
        answer is not inside the window), `offset_mapping` (None outside the context) and `example_index`."""
        encoded = tokenizer(_truncated_questions(examples, tokenizer, max_length // 2), [example["context"] for example in examples], truncation="only_second",
                            max_length=max_length, stride=max_length // 4, return_overflowing_tokens=True,
                            return_offsets_mapping=True, padding=False)
        features = []
        for index, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
            in_context = [sequence == 1 for sequence in encoded.sequence_ids(index)]
            offsets = [tuple(offset) if inside else None
                       for offset, inside in zip(encoded["offset_mapping"][index], in_context)]
            start, end = _answer_positions(examples[example_index]["answers"], offsets)
            features.append({"input_ids": encoded["input_ids"][index], "attention_mask": encoded["attention_mask"][index],
                             "start_positions": start, "end_positions": end, "offset_mapping": offsets,
                             "example_index": example_index})
        return features

    def decode(self, logits: Sequence[np.ndarray], features: Sequence[dict], examples: Sequence[Example],
               labels: Sequence[str]) -> list[tuple[str, str]]:
        """(question id, answer) per example: the span with the highest start + end logit over all its windows."""
        best = [(-np.inf, "")] * len(examples)
        for row, feature in zip(logits, features):
            index = feature["example_index"]
            best[index] = max(best[index], _best_span(row, feature["offset_mapping"], examples[index]["context"]),
                              key=lambda candidate: candidate[0])
        return [(example["id"], answer) for example, (_, answer) in zip(examples, best)]

    def selection_metrics(self, logits: tuple[np.ndarray, np.ndarray], label_ids, features: Sequence[dict],
                          examples: Sequence[Example], labels: Sequence[str]) -> dict[str, float]:
        """EM and F1 of the decoded answers: the Trainer hands (start, end) logits per feature, padded with -100."""
        start, end = logits
        rows = [np.stack([start[i, :len(feature["input_ids"])], end[i, :len(feature["input_ids"])]], axis=-1)
                for i, feature in enumerate(features)]
        return self.score(examples, self.decode(rows, features, examples, labels))

    def score(self, examples: Sequence[Example], predictions: Sequence[tuple[str, str]]) -> dict[str, float]:
        """The spec's scorer (`qa_scorer`); MLQA's normalisation depends on the examples' language."""
        gold = {index: example["answers"]["text"] for index, example in enumerate(examples)}
        answers = {index: answer for index, (_, answer) in enumerate(predictions)}
        return QA_SCORERS[self.spec.qa_scorer](gold, answers, examples[0]["lang"])

    def prediction_file(self, predictions: Sequence[tuple[str, str]]) -> str:
        """XTREME submission format for QA: one JSON object {question id: answer text}."""
        return json.dumps(dict(predictions), ensure_ascii=False)


def _truncated_questions(examples: Sequence[Example], tokenizer, max_tokens: int) -> list[str]:
    """Questions cut to `max_tokens` tokens (BERT's max_query_length), so a window always holds context beyond the
    stride; leading spaces go too, since they only cost window room."""
    questions = [example["question"].lstrip() for example in examples]
    encoded = tokenizer(questions, add_special_tokens=False, truncation=True, max_length=max_tokens,
                        return_offsets_mapping=True)
    return [question[: offsets[-1][1]] if offsets else question
            for question, offsets in zip(questions, encoded["offset_mapping"])]


def _answer_positions(answers: dict, offsets: Sequence[tuple[int, int] | None]) -> tuple[int, int]:
    """Token positions of the first gold answer in one window; (0, 0) when the window does not contain all of it."""
    first_char = answers["answer_start"][0]
    last_char = first_char + len(answers["text"][0])
    context = [position for position, offset in enumerate(offsets) if offset is not None]
    if not context or offsets[context[0]][0] > first_char or offsets[context[-1]][1] < last_char:
        return 0, 0
    start = next(position for position in context if offsets[position][1] > first_char)
    end = next(position for position in reversed(context) if offsets[position][0] < last_char)
    return start, end


def _best_span(logits: np.ndarray, offsets: Sequence[tuple[int, int] | None], context: str) -> tuple[float, str]:
    """(start + end logit, answer text) of the best valid span in one window: both ends inside the context, end at
    or after start, at most MAX_ANSWER_TOKENS tokens, among the N_BEST starts and ends; (-inf, "") when none."""
    starts = np.argsort(logits[:, 0])[::-1][:N_BEST, None]  # a column against a row of ends: every pair at once
    ends = np.argsort(logits[:, 1])[::-1][None, :N_BEST]
    in_context = np.array([offset is not None for offset in offsets])
    valid = in_context[starts] & in_context[ends] & (starts <= ends) & (ends < starts + MAX_ANSWER_TOKENS)
    if not valid.any():
        return -np.inf, ""
    scores = np.where(valid, logits[starts, 0] + logits[ends, 1], -np.inf)
    row, column = np.unravel_index(scores.argmax(), scores.shape)
    start, end = starts[row, 0], ends[0, column]
    return float(scores[row, column]), context[offsets[start][0]: offsets[end][1]]


class DualEncoderHandler(TaskHandler):
    """Dual-encoder retrieval trained on English pairs (LAReQA, Mewsli-X): `components.dual_encoder.DualEncoder`.

    Training and selection go through the Trainer like every other type; selection ranks the distinct answers of the
    English selection pairs (mAP@20). Zero-shot scoring is not per language: every query ranks one multilingual pool,
    so it lives in `components.dual_encoder.score` rather than in `decode`/`score` here.
    """

    auto_model = dual_encoder.DualEncoder
    prediction_extension = "json"

    def collator(self, tokenizer):
        return dual_encoder.pair_collator(tokenizer)

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        return dual_encoder.encode_pairs(examples, tokenizer, max_length)

    def selection_metrics(self, embeddings: tuple[np.ndarray, np.ndarray], label_ids, features: Sequence[dict],
                          examples: Sequence[Example], labels: Sequence[str]) -> dict[str, float]:
        """The Trainer hands the (query, answer) embeddings of the selection pairs, in order."""
        query_embeddings, answer_embeddings = embeddings
        return dual_encoder.selection_map(query_embeddings, answer_embeddings,
                                          [example["answer_id"] for example in examples])


HANDLERS = {
    TaskType.PAIR_CLASSIFICATION: ClassificationHandler,
    TaskType.SINGLE_CLASSIFICATION: ClassificationHandler,
    TaskType.TOKEN_CLASSIFICATION: TokenClassificationHandler,
    TaskType.MULTIPLE_CHOICE: MultipleChoiceHandler,
    TaskType.EXTRACTIVE_QA: ExtractiveQAHandler,
    TaskType.DUAL_ENCODER_RETRIEVAL: DualEncoderHandler,
}


def handler_for(spec: TaskSpec) -> TaskHandler:
    """The handler of `spec`'s task type, bound to `spec` (QA picks its scorer from it)."""
    try:
        return HANDLERS[spec.task_type](spec)
    except KeyError:
        supported = ", ".join(sorted(task_type.value for task_type in HANDLERS))
        raise XstiltsInputError(
            f"task {spec.name!r} is of type {spec.task_type.value}, which training and evaluation do not support "
            f"yet (supported: {supported})"
        ) from None

"""Code keyed by task type: encoding, model head, collation, decoding, scoring and the prediction file format.

Adding a task of an existing type is a registry entry in `components.tasks`; adding a type is one handler here.
"""

import json
from dataclasses import dataclass
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
from components.data import EXAMPLE_CONVERSIONS, HUB_CONVERTERS, READERS, Example
from components.errors import XstiltsInputError
from components.metrics import accuracy, bucc_f1, map_at_k, mlqa_em_f1, squad_em_f1, tagging_f1
# IGNORED_LABEL: the loss and selection skip these positions (special tokens, non-first sub-words)
from components.models import IGNORED_LABEL
from components.retrieval import RETRIEVAL_TASKS
from components.tasks import TASKS, TaskSpec, TaskType



class TaskHandler:
    """What every handler shares: the spec it serves and the model output it decodes.

    The interface: `auto_model`, `prediction_extension`, `collator(tokenizer)`, `encode(examples, tokenizer,
    max_length, labels) -> features` (one or more per example), `model_logits(output)`, `decode(logits per feature,
    features, examples, labels) -> predictions`, `selection_metrics(predictions, label_ids, features, examples,
    labels)` (the Trainer's compute_metrics on the selection set), `score(examples, predictions)`,
    `prediction_file(predictions)` and `evaluation_params(max_length)`.
    """

    def __init__(self, spec: TaskSpec):
        self.spec = spec

    def model_logits(self, output):
        """The logits tensor of a forward pass: (batch, classes), (batch, tokens, tags) or (batch, choices)."""
        return output.logits

    def evaluation_params(self, max_length: int) -> dict[str, str]:
        """Params that say how evaluation reads inputs longer than `max_length`, where the type logs them."""
        return {}


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


TAGGING_MODEL_INPUTS = ("input_ids", "attention_mask", "labels")


class TokenClassificationHandler(TaskHandler):
    """Tagging (UD-POS, PAN-X, CCG): each word is labelled on its first sub-word; the rest are ignored.

    Every word of every sentence is trained on and predicted: a sentence longer than `max_length` is read in
    overlapping windows (`tagging_windows`), and each word's label and prediction belong to the one window where it
    has the most context. Selection scores the selection examples the way evaluation scores a language.
    """

    auto_model = AutoModelForTokenClassification
    prediction_extension = "tsv"

    def collator(self, tokenizer):
        padder = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORED_LABEL)
        # The example index and scored words of a window are for decoding only.
        return lambda features: padder([{key: feature[key] for key in TAGGING_MODEL_INPUTS} for feature in features])

    def evaluation_params(self, max_length: int) -> dict[str, str]:
        return {"tagging_long_sentences": f"windows(overlap={window_overlap(max_length)},word_from=most_context)"}

    def encode(self, examples: Sequence[Example], tokenizer, max_length: int, labels: Sequence[str]) -> list[dict]:
        """One feature per window (one per sentence that fits `max_length`): model inputs, `labels` on the first
        sub-word of each word the window predicts (IGNORED_LABEL elsewhere), the `example_index` and the
        `scored_words`, those words' indices in the sentence, in order.

        A word the tokenizer turns into no sub-word at all is read as the unknown token, as XTREME's `utils_tag.py`
        does, so that it too has a first sub-word.
        """
        label_ids = {label: index for index, label in enumerate(labels)}
        sentences, counts = _tokenizable_words([example["tokens"] for example in examples], tokenizer)
        budget = max_length - tokenizer.num_special_tokens_to_add()
        if budget < 1:
            raise XstiltsInputError(f"max_length {max_length} leaves no room for a word beside the tokenizer's "
                                    f"{tokenizer.num_special_tokens_to_add()} special tokens")
        windows = [(index, window) for index, sentence_counts in enumerate(counts)
                   for window in tagging_windows(sentence_counts, budget, window_overlap(max_length))]
        encoded = tokenizer([sentences[index][window.start: window.end] for index, window in windows],
                            is_split_into_words=True, truncation=True, max_length=max_length)
        features = []
        for row, (index, window) in enumerate(windows):
            first_positions = {}
            for position, word in enumerate(encoded.word_ids(row)):
                if word is not None:
                    first_positions.setdefault(window.start + word, position)
            row_labels = [IGNORED_LABEL] * len(encoded["input_ids"][row])
            for word in window.scored:
                row_labels[first_positions[word]] = label_ids[examples[index]["tags"][word]]
            features.append({"input_ids": encoded["input_ids"][row], "attention_mask": encoded["attention_mask"][row],
                             "labels": row_labels, "example_index": index, "scored_words": window.scored})
        return features

    def decode(self, logits: Sequence[np.ndarray], features: Sequence[dict], examples: Sequence[Example],
               labels: Sequence[str]) -> list[list[str]]:
        """One tag per word, read at its first sub-word in the window that predicts it (the positions `labels`
        marks), so every sentence keeps its length as the XTREME scorer requires."""
        predictions = [[None] * len(example["tokens"]) for example in examples]
        for row, feature in zip(logits, features):
            positions = np.flatnonzero(np.asarray(feature["labels"]) != IGNORED_LABEL)
            for word, tag in zip(feature["scored_words"], row[positions].argmax(axis=-1)):
                predictions[feature["example_index"]][word] = labels[tag]
        return predictions

    def selection_metrics(self, logits: np.ndarray, label_ids: np.ndarray, features: Sequence[dict],
                          examples: Sequence[Example], labels: Sequence[str]) -> dict[str, float]:
        """The benchmark metric of the decoded selection examples: the Trainer hands logits per window, padded."""
        rows = [row[: len(feature["input_ids"])] for row, feature in zip(logits, features)]
        return self.score(examples, self.decode(rows, features, examples, labels))

    def score(self, examples: Sequence[Example], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
        return tagging_f1([example["tags"] for example in examples], predictions, self.spec.tag_scheme)

    def prediction_file(self, predictions: Sequence[Sequence[str]]) -> str:
        """XTREME submission format: one tag per line, a blank line after each sentence."""
        return "".join("".join(f"{tag}\n" for tag in tags) + "\n" for tags in predictions)


@dataclass(frozen=True)
class TaggingWindow:
    """Words `start` to `end` (exclusive) of a sentence, read as one model input; `scored` are the words whose
    label and prediction come from this window."""

    start: int
    end: int
    scored: list[int]


def window_overlap(max_length: int) -> int:
    """Sub-words a tagging window shares with the one before: half the model input."""
    return max_length // 2


def tagging_windows(subword_counts: Sequence[int], budget: int, overlap: int) -> list[TaggingWindow]:
    """The windows a sentence is read in, given its words' sub-word counts, and the words each window predicts.

    A sentence of at most `budget` (>= 1) sub-words, the model input less its special tokens, is one window. A longer
    one is cut into windows of as many whole words as fit in `budget` (a longer word alone, cut by the tokenizer);
    each next window begins with the words that make up the last `overlap` sub-words of the one before, and at least
    one word later than it. Each word is predicted where it has the most context, min(sub-words before it, sub-words
    after it) inside the window, in the first such window on a tie: the rule BERT uses for SQuAD's document windows
    (`_check_is_max_context`). Windows that predict no word are left out.
    """
    offsets = np.concatenate([[0], np.cumsum(subword_counts)])  # sub-words before each word
    bounds = [(0, _window_end(offsets, 0, budget))]
    while bounds[-1][1] < len(subword_counts):
        previous_start, previous_end = bounds[-1]
        start = next(word for word in range(previous_start + 1, previous_end + 1)
                     if offsets[previous_end] - offsets[word] <= overlap)
        bounds.append((start, _window_end(offsets, start, budget)))
    best = {}  # word -> (its context, the window giving it)
    for index, (start, end) in enumerate(bounds):
        for word in range(start, end):
            context = min(offsets[word] - offsets[start], offsets[end] - offsets[word + 1])
            if word not in best or context > best[word][0]:
                best[word] = (context, index)
    windows = [TaggingWindow(start, end, [word for word in range(start, end) if best[word][1] == index])
               for index, (start, end) in enumerate(bounds)]
    return [window for window in windows if window.scored]  # a window beside a word longer than `budget` may add none


def _window_end(offsets: np.ndarray, start: int, budget: int) -> int:
    """The end of the window from word `start`: as many whole words as fit in `budget` sub-words, at least one."""
    end = start + 1
    while end < len(offsets) - 1 and offsets[end + 1] - offsets[start] <= budget:
        end += 1
    return end


def _tokenizable_words(sentences: Sequence[Sequence[str]], tokenizer) -> tuple[list[list[str]], list[np.ndarray]]:
    """The sentences, with each word that yields no sub-word replaced by the unknown token, and the sub-word count
    of every word."""
    encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False)
    readable, counts = [], []
    for index, words in enumerate(sentences):
        word_counts = np.bincount([word for word in encoded.word_ids(index) if word is not None],
                                  minlength=len(words))
        readable.append([word if count else tokenizer.unk_token for word, count in zip(words, word_counts)])
        counts.append(np.maximum(word_counts, 1))
    return readable, counts


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
            # Long contexts (Cosmos QA) are cut; the question and choice only where they would not fit even after
            # the context (where "only_first" raises); CommonsenseQA has no context.
            texts = ([example["context"]] * len(endings), endings) if example["context"] else (endings,)
            encoded = tokenizer(*texts, truncation="longest_first", max_length=max_length)
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
        """The spec's scorer (`qa_scorer`); MLQA's normalisation depends on the examples' language. An unanswerable
        question (SQuAD v2) has the gold answer "", as SQuAD v2's evaluate-v2.0.py scores it; decoding always
        answers with a span, so such a question scores 0."""
        gold = {index: example["answers"]["text"] or [""] for index, example in enumerate(examples)}
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
    """Token positions of the first gold answer in one window; (0, 0), the CLS token, when the window does not
    contain all of it or the question has no answer (SQuAD v2's unanswerable questions: HF's run_qa.py and jiant
    label them so)."""
    if not answers["text"]:
        return 0, 0
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


# Retrieval tasks are read and scored in `components.retrieval`: each file format's scorer, on one matching pair.
RETRIEVAL_SCORES = {
    "aligned_text": lambda: accuracy([0], [0]),  # Tatoeba
    "bucc": lambda: bucc_f1({("a", "b")}, {("a", "b")}),
}
SPLITS = ("train", "dev", "test")


def scorer_metrics(spec: TaskSpec) -> set[str]:
    """The metric names `spec`'s scorer returns, read off the scorer itself on one trivially right item, so that
    they cannot drift from it. Raises (KeyError, ValueError) where `qa_scorer`, `tag_scheme` or a retrieval file
    format names no scorer."""
    if spec.task_type is TaskType.TOKEN_CLASSIFICATION:
        return set(tagging_f1([["B-X"]], [["B-X"]], spec.tag_scheme))
    if spec.task_type is TaskType.EXTRACTIVE_QA:
        return set(QA_SCORERS[spec.qa_scorer]({"q": ["a"]}, {"q": "a"}, "en"))
    if spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL:
        return set(map_at_k({"q": ["a"]}, {"q": ["a"]}, k=dual_encoder.CUTOFF))
    if spec.task_type is TaskType.RETRIEVAL:
        return set(RETRIEVAL_SCORES[spec.file_format]())
    return set(accuracy([0], [0]))


def registry_problems(spec: TaskSpec) -> list[str]:
    """What in `spec` names no code or no task ([] when it all resolves): its type's handler or retrieval evaluator,
    file reader, Hub converter, scorer and metrics, training sources, label aliases and splits."""
    problems = []
    if spec.task_type is TaskType.RETRIEVAL:
        if spec.name not in RETRIEVAL_TASKS:
            problems.append("no evaluator in components.retrieval.RETRIEVAL_TASKS (known: "
                            f"{', '.join(RETRIEVAL_TASKS)})")
        if spec.file_format not in RETRIEVAL_SCORES:
            problems.append(f"file_format {spec.file_format!r} is not a retrieval format "
                            f"({', '.join(RETRIEVAL_SCORES)})")
    else:
        if spec.task_type not in HANDLERS:
            problems.append(f"task_type {spec.task_type.value} has no handler in components.task_types.HANDLERS")
        if spec.file_format not in READERS:
            problems.append(f"file_format {spec.file_format!r} has no reader in components.data.READERS "
                            f"(known: {', '.join(READERS)})")
    if spec.hf_dataset and spec.file_format not in HUB_CONVERTERS:
        problems.append(f"hf_dataset {spec.hf_dataset[0]} but file_format {spec.file_format!r} has no Hub converter in "
                        "components.data.HUB_CONVERTERS")
    if set(spec.hf_splits) - set(SPLITS) or (spec.hf_splits and not spec.hf_dataset):
        problems.append(f"hf_splits {spec.hf_splits} must map {', '.join(SPLITS)} of a registered hf_dataset")
    if not spec.files and not spec.hf_dataset:
        problems.append("neither files nor hf_dataset: no way to obtain the data")
    try:
        unknown = [metric for metric in spec.metrics if metric not in scorer_metrics(spec)]
        if unknown or not spec.metrics:
            problems.append(f"metrics {spec.metrics}: the scorer returns {', '.join(sorted(scorer_metrics(spec)))}")
    except (KeyError, ValueError) as error:
        problems.append(f"no scorer (qa_scorer {spec.qa_scorer!r}, tag_scheme {spec.tag_scheme!r}): {error}")
    for source in spec.train_sources or ():
        if source not in TASKS:
            problems.append(f"train source {source!r} is not a registered task")
        elif TASKS[source].task_type is not spec.task_type and (
                TASKS[source].task_type, spec.task_type) not in EXAMPLE_CONVERSIONS:
            problems.append(f"train source {source!r} is a {TASKS[source].task_type.value} task, with no conversion "
                            f"to {spec.task_type.value}")
    stray_aliases = [label for label in spec.label_aliases.values() if label not in spec.labels]
    if stray_aliases:
        problems.append(f"label_aliases map to {stray_aliases}, not in labels {spec.labels}")
    if spec.dev_split and "dev" not in spec.files:
        problems.append("dev_split without a dev file to split")
    if set(spec.withheld_label_splits) - set(spec.files):
        problems.append(f"withheld_label_splits {spec.withheld_label_splits} name splits without files")
    return problems


def check_registry(specs=None) -> None:
    """Raises one error listing every spec of `specs` (default: the whole registry) that names no code; run when
    this module is imported, so a typo in `components.tasks` fails the test suite at import, not a user's run."""
    problems = [f"{spec.name}: {problem}" for spec in (TASKS.values() if specs is None else specs)
                for problem in registry_problems(spec)]
    if problems:
        raise ValueError("task registry (components/tasks.py) names code that does not exist:\n" + "\n".join(problems))


check_registry()

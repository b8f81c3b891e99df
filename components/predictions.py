"""Prediction files that say what they hold: the split, the language, and which of the split's items.

`evaluate` writes, per task, `predictions/<task>/<split>-<lang>.<ext>` for a file that holds every item of the split
(e.g. `test-de.tsv`), and `predictions/<task>/<split>-<lang>.<n>-of-<N>.<ext>` for one that holds n of its N items (a
debug cap, the dev-split protocol's evaluation part, a capped BUCC split): `dev-de.492-of-2490.tsv`. Beside them,
`predictions/<task>/manifest.json` lists each file with its language, split, item count, the split's size and the
items' positions in the split's file (0-based ranges: `1998-2489`). Only a file named `test-<lang>.<ext>` and listed
as complete is an XTREME submission file (`analysis.submission` assembles those).

Beside each file, `predictions/<task>/<file name>.table.json` holds the same predictions as an MLflow table (one row
per item: `id`, its position in the split; `input`; `gold`; `prediction`; `correct`), which the artifact viewer and
the Compare view show (`prediction_table`). Retrieval files have one too, one row per scored query (`retrieval_table`:
`id`, `query`, `gold_id`, `gold`, `retrieved_id`, `retrieved` (the top-1 candidate), `correct`).
"""

import json
from dataclasses import dataclass, field, fields
from typing import Sequence

from components.data import Example, item_ranges

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PredictionFile:
    """One language's predictions on one split.

    Attributes:
        lang: the language scored.
        split: the split the items come from: test or dev.
        extension: the file format (`tsv`, `json`, `jsonl`).
        content: the file's text, in the XTREME layout of the task.
        n_items: the items predicted.
        split_items: the items of the whole split (for BUCC, the source-language sentences; Tatoeba, the pairs).
        item_ranges: the predicted items' 0-based positions in the split, as ranges (`0-99`, `3,5-9`).
        table: the same predictions as table columns (`prediction_table`, `retrieval_table`), or None.
    """

    lang: str
    split: str
    extension: str
    content: str
    n_items: int
    split_items: int
    item_ranges: str
    table: dict[str, list] | None = field(default=None, compare=False)

    @property
    def complete(self) -> bool:
        return self.n_items == self.split_items

    @property
    def name(self) -> str:
        subset = "" if self.complete else f".{self.n_items}-of-{self.split_items}"
        return f"{self.split}-{self.lang}{subset}.{self.extension}"

    def manifest_entry(self) -> dict:
        described = {entry.name: getattr(self, entry.name) for entry in fields(self)
                     if entry.name not in ("content", "table")}
        return {"file": self.name, **described, "complete": self.complete}


def prediction_file(lang: str, split: str, extension: str, content: str, indices: tuple[int, ...] | range,
                    split_items: int, table: dict[str, list] | None = None) -> PredictionFile:
    """The file of the predictions of the split's items at `indices` (0-based positions in the split's file), with
    its `table` where it has one."""
    return PredictionFile(lang, split, extension, content, len(indices), split_items, item_ranges(indices), table)


def manifest(files: list[PredictionFile]) -> str:
    """`manifest.json`: one entry per file, in the order written."""
    return json.dumps([file.manifest_entry() for file in files], indent=1, ensure_ascii=False) + "\n"


TABLE_COLUMNS = ("id", "input", "gold", "prediction", "correct")
TEXT_SEPARATOR = " ‖ "  # between the texts of one input (premise ‖ hypothesis, context ‖ question)


def table_name(file: PredictionFile) -> str:
    return f"{file.name}.table.json"


def _row(example: Example, prediction) -> tuple[str, str, str]:
    """(input, gold, prediction) of one item as text, by the example's task type: classification (`text_a`, `label`),
    tagging (`tokens`, `tags`: one tag per word), multiple choice (`choices`: the chosen choice's text), extractive
    QA (`answers`: any gold answer; the prediction is (question id, answer))."""
    if "tokens" in example:
        return " ".join(example["tokens"]), " ".join(example["tags"]), " ".join(prediction)
    if "choices" in example:
        texts = [example["context"], example["question"]]
        return (TEXT_SEPARATOR.join(text for text in texts if text), example["choices"][example["label"]],
                example["choices"][prediction])
    if "answers" in example:
        return (TEXT_SEPARATOR.join((example["question"], example["context"])),
                TEXT_SEPARATOR.join(example["answers"]["text"]), prediction[1])
    texts = [example["text_a"], example.get("text_b", "")]
    return TEXT_SEPARATOR.join(text for text in texts if text), example["label"], prediction


def prediction_table(examples: list[Example], predictions: list, indices: tuple[int, ...] | range) -> dict[str, list]:
    """`TABLE_COLUMNS` as columns: one row per example, `id` its 0-based position in the split's file; `correct`:
    the prediction equals the gold (for tagging, every word's tag; for QA, one of the gold answers)."""
    columns = {column: [] for column in TABLE_COLUMNS}
    for index, example, prediction in zip(indices, examples, predictions):
        text, gold, predicted = _row(example, prediction)
        golds = example["answers"]["text"] if "answers" in example else [gold]
        for column, value in zip(TABLE_COLUMNS, (index, text, gold, predicted, predicted in golds)):
            columns[column].append(value)
    return columns


RETRIEVAL_TABLE_COLUMNS = ("id", "query", "gold_id", "gold", "retrieved_id", "retrieved", "correct")


def retrieval_table(indices: Sequence[int], queries: Sequence[str], golds: Sequence[dict[str, str]],
                    retrieved: Sequence[dict[str, str]]) -> dict[str, list]:
    """`RETRIEVAL_TABLE_COLUMNS` as columns, one row per scored query: `id` its 0-based position in the split;
    `golds` and `retrieved`, per query, candidate id -> text: its correct candidates (LAReQA has one per language;
    a BUCC sentence without a gold pair, none) and what it retrieved (the top-1 candidate; BUCC: the pairs kept
    above the threshold, possibly none); several are joined. `correct`: it retrieved only gold candidates, and some
    where it has gold ones."""
    columns = {column: [] for column in RETRIEVAL_TABLE_COLUMNS}
    for index, query, gold, found in zip(indices, queries, golds, retrieved):
        correct = set(found) <= set(gold) and bool(found) == bool(gold)
        for column, value in zip(RETRIEVAL_TABLE_COLUMNS, (index, query, ",".join(gold),
                                                           TEXT_SEPARATOR.join(gold.values()), ",".join(found),
                                                           TEXT_SEPARATOR.join(found.values()), correct)):
            columns[column].append(value)
    return columns

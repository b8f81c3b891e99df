"""Loaders: XTREME `download/` files (or the Hugging Face Hub when a file is absent) -> canonical examples.

Canonical examples are plain dicts keyed by task type, always with `lang`:
- pair / single classification: `text_a`, `text_b` (pairs only), `label` (a string of the spec's label set);
- multiple choice: `context`, `question`, `choices` (list of str), `label` (index);
- token classification: `tokens`, `tags`;
- extractive QA: `id`, `context`, `question`, `answers` ({"text": [...], "answer_start": [...]}).
Retrieval files (Tatoeba, BUCC, LAReQA, Mewsli-X) have readers of their own in the retrieval components.

Every malformed input ends in one `XstiltsInputError` naming the file, line and value.
"""

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from components.errors import XstiltsInputError
from components.settings import DATA_ROOT_ENV, data_root
from components.tasks import DevSplit, TaskSpec, get_task

Example = dict
ZERO_SHOT_SOURCE_LANG = "en"
PROTOCOLS = ("standard", "dev-split", "target-dev")


def _fail(path: Path | str, line: int, message: str) -> XstiltsInputError:
    return XstiltsInputError(f"{path}:{line}: {message}")


def _label(spec: TaskSpec, raw: str, path: Path | str, line: int) -> str:
    label = spec.label_aliases.get(raw.strip(), raw.strip())
    if label == "":
        raise _fail(path, line, "empty label")
    if spec.labels and label not in spec.labels:
        raise _fail(path, line, f"label {raw!r} is not in the label set of {spec.name}: {', '.join(spec.labels)}")
    return label


def _unlabeled(path: Path | str, why: str) -> XstiltsInputError:
    return XstiltsInputError(f"{path}: unlabeled split ({why}); the benchmark withholds these labels, so it cannot be scored")


def _read_tsv_pair(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if rows and all(len(row) == 2 for row in rows):
        raise _unlabeled(path, "every row has 2 columns: text_a, text_b and no label")
    examples = []
    for line, row in enumerate(rows, start=1):
        if len(row) != 3:
            raise _fail(path, line, f"expected 3 tab-separated columns (text_a, text_b, label), found {len(row)}")
        examples.append({"text_a": row[0], "text_b": row[1], "label": _label(spec, row[2], path, line), "lang": lang})
    return examples


def _read_csv_records(path: Path, required: tuple[str, ...], delimiter: str = ",") -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
        missing = [column for column in required if column not in (reader.fieldnames or ())]
        if missing:
            raise _fail(path, 1, f"header lacks column(s) {', '.join(missing)}; found {reader.fieldnames}")
        for record in reader:
            # A row with more fields than the header lands under the None key; fewer leaves None values.
            if None in record or any(value is None for value in record.values()):
                raise _fail(path, reader.line_num, f"expected {len(reader.fieldnames)} columns as in the header")
            yield reader.line_num, record


def _read_anli_csv(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    return [
        {"text_a": r["context"], "text_b": r["statement"], "label": _label(spec, r["gold_label"], path, line), "lang": lang}
        for line, r in _read_csv_records(path, ("context", "statement", "gold_label"))
    ]


def _read_sst2_tsv(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    return [
        {"text_a": r["sentence"], "label": _label(spec, r["label"], path, line), "lang": lang}
        for line, r in _read_csv_records(path, ("sentence", "label"), delimiter="\t")
    ]


def _read_conll(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    examples, tokens, tags = [], [], []
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.rstrip("\n")
            if not text.strip():
                if tokens:
                    examples.append({"tokens": tokens, "tags": tags, "lang": lang})
                    tokens, tags = [], []
                continue
            columns = text.split("\t")
            if len(columns) == 1:
                raise _unlabeled(path, f"line {line} has a token and no tag")
            if len(columns) != 2:
                raise _fail(path, line, f"expected 2 tab-separated columns (token, tag), found {len(columns)}")
            tokens.append(columns[0])
            tags.append(_label(spec, columns[1], path, line))
    if tokens:
        examples.append({"tokens": tokens, "tags": tags, "lang": lang})
    return examples


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield line, json.loads(text)
                except json.JSONDecodeError as error:
                    raise _fail(path, line, f"not valid JSON ({error.msg})") from None


def _field(record: dict, key: str, path: Path, line: int):
    if key not in record:
        raise _fail(path, line, f"missing field {key!r}; found {sorted(record)}")
    return record[key]


def _choice_index(raw, n_choices: int, path: Path, line: int, first: int = 0) -> int:
    try:
        index = int(raw) - first
    except (TypeError, ValueError):
        raise _fail(path, line, f"label {raw!r} is not a choice number") from None
    if not 0 <= index < n_choices:
        raise _fail(path, line, f"label {raw!r} is outside the {n_choices} choices")
    return index


COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _read_copa_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    examples = []
    for line, r in _read_jsonl(path):
        choices = [_field(r, "choice1", path, line), _field(r, "choice2", path, line)]
        question = _field(r, "question", path, line)
        if question not in COPA_QUESTIONS:
            raise _fail(path, line, f"question {question!r} is neither 'cause' nor 'effect'")
        examples.append({
            "context": _field(r, "premise", path, line),
            # The same English question in every language: XCOPA translates premises and choices only.
            "question": COPA_QUESTIONS[question],
            "choices": choices,
            "label": _choice_index(_field(r, "label", path, line), len(choices), path, line),
            "lang": lang,
        })
    return examples


def _read_siqa_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    examples = []
    for line, r in _read_jsonl(path):
        choices = [_field(r, f"answer{letter}", path, line) for letter in "ABC"]
        correct = _field(r, "correct", path, line)
        if correct not in ("A", "B", "C"):
            raise _fail(path, line, f"label {correct!r} is not one of A, B, C")
        examples.append({"context": _field(r, "context", path, line), "question": _field(r, "question", path, line),
                          "choices": choices, "label": "ABC".index(correct), "lang": lang})
    return examples


def _read_commonsenseqa_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    examples = []
    for line, r in _read_jsonl(path):
        choices = _field(r, "choices", path, line)
        key = _field(r, "answerKey", path, line)
        if key not in choices["label"]:
            raise _fail(path, line, f"answerKey {key!r} is not one of {choices['label']}")
        examples.append({"context": "", "question": _field(r, "question", path, line), "choices": list(choices["text"]),
                         "label": choices["label"].index(key), "lang": lang})
    return examples


def _read_cosmosqa_csv(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    answers = tuple(f"answer{i}" for i in range(4))
    return [
        {"context": r["context"], "question": r["question"], "choices": [r[a] for a in answers],
         "label": _choice_index(r["label"], 4, path, line), "lang": lang}
        for line, r in _read_csv_records(path, ("context", "question", *answers, "label"))
    ]


def _read_squad_json(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _fail(path, error.lineno, f"not valid JSON ({error.msg})") from None
    articles = articles["data"] if isinstance(articles, dict) else articles
    examples = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = qa.get("answers", [])
                if not answers or not any(answer["text"] for answer in answers):
                    raise _unlabeled(path, f"question {qa['id']} has no answer text")
                _check_answer_offsets(path, qa["id"], paragraph["context"], answers)
                examples.append({
                    "id": qa["id"], "context": paragraph["context"], "question": qa["question"],
                    "answers": {"text": [a["text"] for a in answers], "answer_start": [a["answer_start"] for a in answers]},
                    "lang": lang,
                })
    return examples


def _check_answer_offsets(path: Path, question_id: str, context: str, answers: list[dict]) -> None:
    """Training positions and the answer check both trust `answer_start`: a text elsewhere is a malformed file."""
    for answer in answers:
        start, text = answer["answer_start"], answer["text"]
        if context[start: start + len(text)] != text:
            raise XstiltsInputError(f"{path}: question {question_id}: answer {text!r} does not match its context at "
                                    f"answer_start {start} (found {context[start: start + len(text)]!r})")


READERS: dict[str, Callable[[Path, TaskSpec, str], list[Example]]] = {
    "tsv_pair": _read_tsv_pair,
    "anli_csv": _read_anli_csv,
    "sst2_tsv": _read_sst2_tsv,
    "conll": _read_conll,
    "copa_jsonl": _read_copa_jsonl,
    "siqa_jsonl": _read_siqa_jsonl,
    "commonsenseqa_jsonl": _read_commonsenseqa_jsonl,
    "cosmosqa_csv": _read_cosmosqa_csv,
    "squad_json": _read_squad_json,
}


def _local_paths(spec: TaskSpec, split: str, lang: str, root: Path) -> list[Path]:
    return [root / pattern.format(lang=lang) for pattern in spec.files.get(split, ())]


def _labeled_locally(spec: TaskSpec, split: str, lang: str, root: Path) -> bool:
    """Whether the local XTREME layout holds `split` in `lang` with its labels."""
    paths = _local_paths(spec, split, lang, root)
    return split not in spec.withheld_label_splits and bool(paths) and all(path.is_file() for path in paths)


def _why_not_local(spec: TaskSpec, split: str, lang: str, root: Path) -> str:
    """Why `split` in `lang` cannot be read from the local XTREME layout (see `_labeled_locally`)."""
    paths = _local_paths(spec, split, lang, root)
    if split in spec.withheld_label_splits:
        return f"the XTREME layout withholds {spec.name} {split} labels, so local files are never scored"
    if paths:
        missing = [str(path) for path in paths if not path.is_file()]
        return f"missing data file(s): {', '.join(missing)} (data root {root}; set {DATA_ROOT_ENV} to change it)"
    return f"the XTREME layout has no {split} split for {spec.name}"


def _on_hub(spec: TaskSpec, split: str) -> bool:
    return spec.hf_dataset is not None and split in spec.hf_splits


def _from_hub(spec: TaskSpec, split: str, lang: str) -> list[Example]:
    """The Hugging Face `datasets` path for users online; raises with the reason when it is unreachable."""
    if not _on_hub(spec, split):
        raise LookupError(f"no Hugging Face dataset is registered for {spec.name} {split}")
    import datasets  # imported here: offline users never pay for it

    dataset_id, config = spec.hf_dataset
    hub_split = spec.hf_splits[split]
    rows = datasets.load_dataset(dataset_id, config.format(lang=lang) if config else None, split=hub_split)
    convert = HUB_CONVERTERS.get(spec.file_format)
    if convert is None:
        raise LookupError(f"no converter from the Hub's {dataset_id} rows to {spec.task_type.value} examples")
    source = f"hf://{dataset_id}/{config or ''}/{hub_split}"  # names the Hub split in errors, as a path would
    return [convert(row, spec, lang, source, index) for index, row in enumerate(rows, start=1)]


def _hub_label(row: dict, spec: TaskSpec, source: str, index: int) -> str:
    label_id = row["label"]
    if label_id < 0:  # GLUE-style test splits mark withheld labels with -1
        raise _unlabeled(source, f"row {index} has label {label_id}")
    if label_id >= len(spec.labels):
        raise _fail(source, index, f"label id {label_id} is outside the {len(spec.labels)} labels of {spec.name}")
    return spec.labels[label_id]


def _hub_pair(row: dict, spec: TaskSpec, lang: str, source: str, index: int) -> Example:
    text_a, text_b = next((row[a], row[b]) for a, b in (("premise", "hypothesis"), ("sentence1", "sentence2"),
                                                         ("question1", "question2")) if a in row)
    return {"text_a": text_a, "text_b": text_b, "label": _hub_label(row, spec, source, index), "lang": lang}


def _hub_single(row: dict, spec: TaskSpec, lang: str, source: str, index: int) -> Example:
    return {"text_a": row["sentence"], "label": _hub_label(row, spec, source, index), "lang": lang}


def _hub_tags(row: dict, spec: TaskSpec, lang: str, source: str, index: int) -> Example:
    return {"tokens": list(row["tokens"]), "tags": [spec.labels[tag] for tag in row["ner_tags"]], "lang": lang}


def _hub_squad(row: dict, spec: TaskSpec, lang: str, source: str, index: int) -> Example:
    answers = {"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])}
    return {"id": row["id"], "context": row["context"], "question": row["question"], "answers": answers, "lang": lang}


HUB_CONVERTERS = {
    "tsv_pair": _hub_pair,
    "anli_csv": _hub_pair,
    "sst2_tsv": _hub_single,
    "conll": _hub_tags,
    "squad_json": _hub_squad,
}


def load_split(spec: TaskSpec, split: str, lang: str, root: Path | None = None) -> list[Example]:
    """All labeled examples of one split in one language: local files first, then the Hub.

    A split whose labels XTREME blanks is never read from the XTREME layout; only the Hub (which keeps the labels
    for some tasks) can serve it.
    """
    spec.check_lang(lang, training=split != "test")
    root = root or data_root()
    if _labeled_locally(spec, split, lang, root):
        reader = READERS.get(spec.file_format)
        if reader is None:
            raise XstiltsInputError(f"task {spec.name!r} ({spec.file_format} files) has no example reader")
        return [example for path in _local_paths(spec, split, lang, root) for example in reader(path, spec, lang)]
    try:
        return _from_hub(spec, split, lang)
    except XstiltsInputError:
        raise
    except Exception as error:  # any Hub failure ends in the one message below, with its reason
        raise XstiltsInputError(_missing_message(spec, split, lang, root, error)) from None


def _missing_message(spec: TaskSpec, split: str, lang: str, root: Path, error: Exception) -> str:
    local = _why_not_local(spec, split, lang, root)
    alternative = ", or use --protocol dev-split" if spec.dev_split else ""
    return (f"cannot load {spec.name} {split} [{lang}]: {local}; the Hugging Face dataset path failed too "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Obtain the file with "
            f"google-research/xtreme scripts/download_data.sh or go online{alternative}.")


@dataclass(frozen=True)
class DevSplitCut:
    """Which items of one task's English dev pool the dev-split protocol trains on, selects on and evaluates: sorted
    indices, the same in every language (the dev files are line-aligned translations)."""

    train: tuple[int, ...]
    select: tuple[int, ...]
    evaluated: tuple[int, ...]

    @property
    def pool_size(self) -> int:
        return len(self.train) + len(self.select) + len(self.evaluated)

    def describe(self) -> dict[str, str]:
        """Params: each part's item ranges (`0-1799`, or `0-3,5,9-12` where groups interleave), the part sizes, and a
        fingerprint of the whole assignment, so that runs on the same items are recognised at a glance."""
        parts = {"train": self.train, "select": self.select, "eval": self.evaluated}
        fingerprint = hashlib.sha256(json.dumps(list(parts.values())).encode("ascii")).hexdigest()[:12]
        return {**{f"protocol_{name}_items": _item_ranges(indices) for name, indices in parts.items()},
                "protocol_split_sizes": ", ".join(f"{name} {len(indices)}" for name, indices in parts.items()),
                "protocol_split_fingerprint": fingerprint}


def _item_ranges(indices: tuple[int, ...] | range) -> str:
    """Ascending item indices as ranges of consecutive items: `0-3,5,9-12`."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(f"{first}-{last}" if last > first else str(first) for first, last in runs)


def _item_groups(pool: list[Example], fields: tuple[str, ...]) -> list[list[int]]:
    """The pool's item indices in groups, ordered by first item: items sharing a string in any of `fields` form one
    group, transitively (union-find); without `fields` every item is a group of its own."""
    parent = list(range(len(pool)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]  # path halving keeps the trees shallow
            index = parent[index]
        return index

    first_item_with: dict[str, int] = {}
    for index, example in enumerate(pool):
        for text in (example[field] for field in fields):
            parent[root(index)] = root(first_item_with.setdefault(text, index))
    groups: dict[int, list[int]] = {}
    for index in range(len(pool)):
        groups.setdefault(root(index), []).append(index)
    return list(groups.values())


def cut_dev_pool(pool: list[Example], dev_split: DevSplit) -> DevSplitCut:
    """Deal an English dev pool's groups out to train, select and eval for the dev-split protocol (see `DevSplit`)."""
    targets = {"train": dev_split.train, "select": dev_split.select}
    parts: dict[str, list[int]] = {"train": [], "select": [], "eval": []}
    for group in _item_groups(pool, dev_split.group_by):
        part = next((name for name, target in targets.items() if len(parts[name]) < target), "eval")
        parts[part].extend(group)
    if len(parts["select"]) < dev_split.select:
        raise XstiltsInputError(
            f"the dev pool has {len(pool)} items, too few for {dev_split.train} train + {dev_split.select} select items"
        )
    return DevSplitCut(*(tuple(sorted(indices)) for indices in parts.values()))


def _dev_split_of(spec: TaskSpec) -> DevSplit:
    if spec.dev_split is None:
        raise XstiltsInputError(f"task {spec.name!r} has no dev-split protocol; use --protocol standard")
    return spec.dev_split


@dataclass(frozen=True)
class TrainingData:
    """One training stage: training and selection examples of `task`, both in the training language."""

    task: str
    train: list[Example]
    select: list[Example]
    params: dict[str, str]


def training_stages(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None, *, train_source: str = "",
                    select_holdout: int = 0) -> list[TrainingData]:
    """The training stages of `spec` in `lang` (English for every target task) under `protocol`, in order.

    Dev-split: one stage of cuts of the task's dev pool. Standard and target-dev: one stage per English training
    source (XNLI: MNLI; XCOPA: SocialIQA, then COPA, as XTREME-R trains it); the last stage selects on the task's
    own dev split, an earlier one trains under its own task's default protocol and selects on that task's dev.

    Args:
        train_source: a task of the same type whose English train split replaces all of the registry's training
            sources (e.g. TyDiQA-GoldP for XQuAD/MLQA, whose SQuAD is not in the bundle); "" = the registry's.
        select_holdout: when > 0, the last stage selects on the last `select_holdout` items of its training data
            instead of the task's dev split (for tasks without an English dev split offline); 0 = dev split.
    """
    if protocol == "dev-split":
        if train_source or select_holdout:
            raise XstiltsInputError(f"--train-source and --select-holdout apply to the standard and target-dev "
                                    f"protocols; dev-split trains and selects on cuts of {spec.name}'s own dev pool")
        return [_dev_split_stage(spec, lang, root)]
    *earlier, last = _training_sources(spec, train_source)
    train = load_split(last, "train", lang, root)
    params = {"data_protocol": protocol, "train_source": last.name}
    final = (_held_out_stage(spec, last, train, select_holdout, params) if select_holdout
             else TrainingData(spec.name, train, _english_dev(spec, lang, root), {**params, "select_source": "dev"}))
    return [_earlier_stage(source, lang, root) for source in earlier] + [final]


def _training_sources(spec: TaskSpec, train_source: str) -> list[TaskSpec]:
    if not train_source:
        return [get_task(name) for name in spec.train_sources] if spec.train_sources else [spec]
    source = get_task(train_source)
    if source.task_type is not spec.task_type:
        raise XstiltsInputError(f"--train-source {source.name} is a {source.task_type.value} task; {spec.name} needs "
                                f"one of its own type, {spec.task_type.value}")
    return [source]


def _english_dev(spec: TaskSpec, lang: str, root: Path | None) -> list[Example]:
    try:
        return load_split(spec, "dev", lang, root)
    except XstiltsInputError as error:
        raise XstiltsInputError(f"{error} To select on held-out training items instead, pass --select-holdout N."
                                ) from None


def _held_out_stage(spec: TaskSpec, source: TaskSpec, train: list[Example], holdout: int,
                    params: dict[str, str]) -> TrainingData:
    """The last `holdout` training items select; their item range in the source's train split is logged."""
    if not 0 < holdout < len(train):
        raise XstiltsInputError(f"--select-holdout {holdout}: expected 1 to {len(train) - 1}, since {source.name} "
                                f"train has {len(train)} items")
    cut = len(train) - holdout
    return TrainingData(spec.name, train[:cut], train[cut:],
                        {**params, "select_source": f"{source.name} train",
                         "protocol_train_items": _item_ranges(range(cut)),
                         "protocol_select_items": _item_ranges(range(cut, len(train)))})


def _dev_split_stage(spec: TaskSpec, lang: str, root: Path | None) -> TrainingData:
    pool = load_split(spec, "dev", lang, root)
    cut = cut_dev_pool(pool, _dev_split_of(spec))
    return TrainingData(spec.name, [pool[index] for index in cut.train], [pool[index] for index in cut.select],
                        {"data_protocol": "dev-split", **cut.describe()})


def _earlier_stage(source: TaskSpec, lang: str, root: Path | None) -> TrainingData:
    if resolve_protocol(source, "auto") == "dev-split":
        return _dev_split_stage(source, lang, root)
    return TrainingData(source.name, load_split(source, "train", lang, root), load_split(source, "dev", lang, root),
                        {"data_protocol": "standard"})


def stage_params(stages: list[TrainingData]) -> dict[str, str]:
    """Flat params describing the stages: unprefixed for one stage, `stage<i>_` prefixed for several."""
    params = {}
    for number, stage in enumerate(stages, start=1):
        prefix = f"stage{number}_" if len(stages) > 1 else ""
        described = {"task": stage.task, **stage.params} if prefix else stage.params
        params.update({f"{prefix}{key}": value for key, value in described.items()})
        params.update({f"{prefix}n_train_examples": len(stage.train), f"{prefix}n_select_examples": len(stage.select)})
    return params


def evaluation_split(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None) -> str:
    """The split ("test" or "dev") a zero-shot evaluation scores in `lang` under `protocol`.

    Dev-split and target-dev score dev items. Standard scores the benchmark's test split where its labels are in the
    local XTREME layout, else the local labeled dev split (e.g. UD-POS languages whose only test treebank is PUD,
    which the bundle leaves out; XNLI, whose test labels XTREME blanks), else, for users online, the test split on the
    Hugging Face Hub. Decided per language, so one task can mix test and dev: evaluate logs the split per language.

    Raises:
        XstiltsInputError: an unknown protocol or language, or, under standard, a language with neither a local
            labeled test or dev file nor a Hub test split (naming the files looked for).
    """
    spec.check_lang(lang)
    if resolve_protocol(spec, protocol) != "standard":
        return "dev"
    root = root or data_root()
    for split in ("test", "dev"):
        if _labeled_locally(spec, split, lang, root):
            return split
    if _on_hub(spec, "test"):
        return "test"
    raise XstiltsInputError(
        f"cannot evaluate {spec.name} [{lang}]: no labeled test or dev data. "
        f"test: {_why_not_local(spec, 'test', lang, root)}; dev: {_why_not_local(spec, 'dev', lang, root)}; "
        f"no Hugging Face dataset is registered for {spec.name} test. Leave the language out (--langs) or obtain its "
        "files with google-research/xtreme scripts/download_data.sh."
    )


def evaluation_data(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None) -> list[Example]:
    """The labeled examples a zero-shot evaluation scores in `lang` under `protocol`, from `evaluation_split`'s split.

    Dev-split scores the evaluation part of the dev pool: the same items in every language. Target-dev scores each
    language's dev split (jiant's X-STILTs practice where test labels are withheld); the English dev split is also the
    selection set, so the English score is optimistic.
    """
    protocol = resolve_protocol(spec, protocol)
    if protocol != "dev-split":
        return load_split(spec, evaluation_split(spec, protocol, lang, root), lang, root)
    english_pool = load_split(spec, "dev", ZERO_SHOT_SOURCE_LANG, root)
    cut = cut_dev_pool(english_pool, _dev_split_of(spec))
    pool = english_pool if lang == ZERO_SHOT_SOURCE_LANG else load_split(spec, "dev", lang, root)
    if len(pool) != cut.pool_size:
        raise XstiltsInputError(
            f"{spec.name} dev [{lang}] has {len(pool)} items but dev [en] has {cut.pool_size}: the dev-split protocol "
            "needs line-aligned translations"
        )
    if not cut.evaluated:
        raise XstiltsInputError(f"the dev-split protocol of {spec.name} leaves no dev items to evaluate")
    return [pool[index] for index in cut.evaluated]


def resolve_protocol(spec: TaskSpec, protocol: str) -> str:
    """`auto`: dev-split where the registry defines one (no English training set offline), else target-dev where
    the benchmark withholds test labels, else standard."""
    if protocol == "auto":
        if spec.dev_split:
            return "dev-split"
        return "target-dev" if "test" in spec.withheld_label_splits else "standard"
    if protocol not in PROTOCOLS:
        raise XstiltsInputError(f"unknown protocol {protocol!r}; expected auto or one of: {', '.join(PROTOCOLS)}")
    return protocol

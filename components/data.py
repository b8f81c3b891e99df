"""Loaders: XTREME `download/` files (or the Hugging Face Hub when a file is absent) -> canonical examples.

Canonical examples are plain dicts keyed by task type, always with `lang`:
- pair / single classification: `text_a`, `text_b` (pairs only), `label` (a string of the spec's label set);
- multiple choice: `context`, `question`, `choices` (list of str), `label` (index);
- token classification: `tokens`, `tags`;
- extractive QA: `id`, `context`, `question`, `answers` ({"text": [...], "answer_start": [...]});
- dual-encoder retrieval (LAReQA, Mewsli-X): `id` (the query's; LAReQA's is shared by a question's translations),
  `query`, `answer_id` (the correct candidate), `answer` (that candidate's text as encoded; "" where the file does not
  hold it, e.g. Mewsli-X mentions, whose entities are in the candidate set), and for LAReQA `candidates`, the
  (candidate id, text) pairs of the question's paragraph (see `candidate_pool`).
Tatoeba and BUCC files have readers of their own in `components.retrieval`.

Every malformed input ends in one `XstiltsInputError` naming the file, line and value.
"""

import csv
import functools
import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from components.errors import XstiltsInputError, not_utf8
from components.settings import DATA_ROOT_ENV, data_root
from components.tasks import DevSplit, TaskSpec, TaskType, get_task

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


def _text(value: str, path: Path | str, line: int, column: str) -> str:
    """A sentence field; an empty one would be encoded as nothing but special tokens and scored as noise."""
    if not value.strip():
        raise _fail(path, line, f"empty {column}: expected a sentence")
    return value


class UnlabeledSplitError(XstiltsInputError):
    """A whole file without labels: the benchmark withholds them (XTREME's preprocessing blanks test labels)."""

    def __init__(self, path: Path | str, why: str):
        self.path, self.why = path, why
        super().__init__(f"{path}: unlabeled split ({why}); the benchmark withholds these labels, so it cannot be "
                         "scored")


def _read_tsv_pair(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if rows and all(len(row) == 2 for row in rows):
        raise UnlabeledSplitError(path, "every row has 2 columns: text_a, text_b and no label")
    examples = []
    for line, row in enumerate(rows, start=1):
        if len(row) != 3:
            raise _fail(path, line, f"expected 3 tab-separated columns (text_a, text_b, label), found {len(row)}")
        examples.append({"text_a": _text(row[0], path, line, "text_a"), "text_b": _text(row[1], path, line, "text_b"),
                         "label": _label(spec, row[2], path, line), "lang": lang})
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
        {"text_a": _text(r["context"], path, line, "context"), "text_b": _text(r["statement"], path, line, "statement"),
         "label": _label(spec, r["gold_label"], path, line), "lang": lang}
        for line, r in _read_csv_records(path, ("context", "statement", "gold_label"))
    ]


def _read_sst2_tsv(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    return [
        {"text_a": _text(r["sentence"], path, line, "sentence"), "label": _label(spec, r["label"], path, line), "lang": lang}
        for line, r in _read_csv_records(path, ("sentence", "label"), delimiter="\t")
    ]


def _read_conll(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    with path.open(encoding="utf-8") as handle:
        lines = [text.rstrip("\n") for text in handle]
    # XTREME's panx_preprocess and udpos_preprocess write test files with the words alone.
    if any(text.strip() for text in lines) and all("\t" not in text for text in lines):
        raise UnlabeledSplitError(path, "every line holds a word and no tag")
    examples, tokens, tags = [], [], []
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            if tokens:
                examples.append({"tokens": tokens, "tags": tags, "lang": lang})
                tokens, tags = [], []
            continue
        columns = text.split("\t")
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


def _copa_example(r: dict, spec: TaskSpec, lang: str, path: Path | str, line: int) -> Example:
    """One COPA/XCOPA record: the same fields in the XTREME files, super_glue copa and cambridgeltl/xcopa."""
    choices = [_field(r, "choice1", path, line), _field(r, "choice2", path, line)]
    question = _field(r, "question", path, line)
    if question not in COPA_QUESTIONS:
        raise _fail(path, line, f"question {question!r} is neither 'cause' nor 'effect'")
    if r.get("label") == -1:  # the Hub's test splits withhold labels as -1
        raise UnlabeledSplitError(path, f"row {line} has label -1")
    return {
        "context": _field(r, "premise", path, line),
        # The same English question in every language: XCOPA translates premises and choices only.
        "question": COPA_QUESTIONS[question],
        "choices": choices,
        "label": _choice_index(_field(r, "label", path, line), len(choices), path, line),
        "lang": lang,
    }


def _read_copa_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    records = list(_read_jsonl(path))
    if records and all("label" not in record for _, record in records):  # as SuperGLUE's COPA test file
        raise UnlabeledSplitError(path, "no record has a `label` field")
    return [_copa_example(r, spec, lang, path, line) for line, r in records]


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


COMMONSENSEQA_CHOICES = 5


def _commonsenseqa_example(r: dict, spec: TaskSpec, lang: str, path: Path | str, line: int) -> Example:
    """One CommonsenseQA record: the bundle's file has tau/commonsense_qa's Hub fields."""
    choices = _field(r, "choices", path, line)
    if len(choices["text"]) != COMMONSENSEQA_CHOICES:
        raise _fail(path, line, f"expected {COMMONSENSEQA_CHOICES} choices, found {len(choices['text'])}")
    key = _field(r, "answerKey", path, line)
    if key not in choices["label"]:
        raise _fail(path, line, f"answerKey {key!r} is not one of {choices['label']}")
    return {"context": "", "question": _field(r, "question", path, line), "choices": list(choices["text"]),
            "label": choices["label"].index(key), "lang": lang}


def _read_commonsenseqa_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    return [_commonsenseqa_example(r, spec, lang, path, line) for line, r in _read_jsonl(path)]


HELLASWAG_ENDINGS = 4


def _hellaswag_example(r: dict, spec: TaskSpec, lang: str, path: Path | str, line: int) -> Example:
    """One HellaSwag record (rowanz/hellaswag's jsonl or Rowan/hellaswag on the Hub, where `label` is a string and
    "" in the unlabeled test split). The context is `ctx_a`, and `ctx_b` (the unfinished sentence, often empty)
    starts every ending, as the BERT baseline of the HellaSwag repository pairs them."""
    endings = _field(r, "endings", path, line)
    if len(endings) != HELLASWAG_ENDINGS:
        raise _fail(path, line, f"expected {HELLASWAG_ENDINGS} endings, found {len(endings)}")
    label = _field(r, "label", path, line)
    if label == "":
        raise UnlabeledSplitError(path, f"row {line} has an empty label")
    return {"context": _field(r, "ctx_a", path, line), "question": _field(r, "ctx_b", path, line),
            "choices": list(endings), "label": _choice_index(label, len(endings), path, line), "lang": lang}


def _read_hellaswag_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    return [_hellaswag_example(r, spec, lang, path, line) for line, r in _read_jsonl(path)]


COSMOSQA_ANSWERS = tuple(f"answer{i}" for i in range(4))


def _cosmosqa_example(r: dict, spec: TaskSpec, lang: str, path: Path | str, line: int) -> Example:
    """One Cosmos QA record: the bundle's CSV columns are allenai/cosmos_qa's Hub fields (label a string there, an
    int on the Hub)."""
    return {"context": _field(r, "context", path, line), "question": _field(r, "question", path, line),
            "choices": [_field(r, answer, path, line) for answer in COSMOSQA_ANSWERS],
            "label": _choice_index(_field(r, "label", path, line), len(COSMOSQA_ANSWERS), path, line), "lang": lang}


def _read_cosmosqa_csv(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    return [_cosmosqa_example(r, spec, lang, path, line)
            for line, r in _read_csv_records(path, ("context", "question", *COSMOSQA_ANSWERS, "label"))]


def _squad_articles(path: Path) -> list[dict]:
    """The articles of a SQuAD-format file: its `data` list, or the bare list."""
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _fail(path, error.lineno, f"not valid JSON ({error.msg})") from None
    return articles["data"] if isinstance(articles, dict) else articles


def _read_squad_json(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    questions = [(paragraph["context"], qa) for article in _squad_articles(path) for paragraph in article["paragraphs"]
                 for qa in paragraph["qas"]]
    unanswered = [qa["id"] for _, qa in questions if not any(answer["text"] for answer in qa.get("answers", []))]
    if questions and len(unanswered) == len(questions):  # XTREME's remove_qa_test_annotations blanks every answer
        raise UnlabeledSplitError(path, "no question has an answer text")
    if unanswered:
        raise XstiltsInputError(f"{path}: question {unanswered[0]} has no answer text ({len(unanswered)} of "
                                f"{len(questions)} questions have none); expected an answer for every question")
    examples = []
    for context, qa in questions:
        answers = qa["answers"]
        _check_answer_offsets(path, qa["id"], context, answers)
        examples.append({
            "id": qa["id"], "context": context, "question": qa["question"],
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


def _json_fail(path: Path, where: str, message: str) -> XstiltsInputError:
    """An error inside one JSON document, located by its place in the document (its lines carry no rows)."""
    return XstiltsInputError(f"{path}: {where}: {message}")


def _candidate_text(sentence: str, context: str) -> str:
    """What a LAReQA candidate encodes: its sentence, then its paragraph. XTREME's evaluation concatenates the two
    without a separator (`evaluate_retrieval.py`) and its training passes them as a text pair; one space keeps words
    apart and is the same text in training and evaluation."""
    return f"{sentence} {context}"


def _read_xquad_r_json(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    """XQuAD-R (LAReQA): one example per question, as google-research/xtreme third_party/utils_lareqa.py
    (`generate_examples`, `load_data`) reads the files.

    A paragraph's sentences are the `sentence_breaks` slices of its context (the `sentences` field disagrees with them
    in one Turkish paragraph; XTREME reads the breaks). Every sentence is a candidate, id
    `<lang>_<paragraph number in the file>_<sentence index>`; a question's answer is the sentence holding its
    `answer_start`. XTREME skips a question whose answer starts in no sentence; here that is an error, so that no
    question disappears unseen (the released files have none).
    """
    examples = []
    paragraphs = ((f"data[{a}].paragraphs[{p}]", paragraph) for a, article in enumerate(_squad_articles(path))
                  for p, paragraph in enumerate(article.get("paragraphs", ())))
    for number, (where, paragraph) in enumerate(paragraphs, start=1):
        context, breaks = paragraph.get("context"), paragraph.get("sentence_breaks")
        if not isinstance(context, str) or not _valid_breaks(breaks, context):
            raise _json_fail(path, where, "expected a `context` string and `sentence_breaks`, a list of [start, end] "
                                          "character offsets inside it")
        candidates = [(f"{lang}_{number}_{index}", _candidate_text(context[start:end], context))
                      for index, (start, end) in enumerate(breaks)]
        for qa in paragraph.get("qas", ()):
            answers = qa.get("answers") or [{}]
            start = answers[0].get("answer_start")
            sentence = next((index for index, (first, end) in enumerate(breaks)
                             if isinstance(start, int) and first <= start < end), None)
            if len(answers) != 1 or sentence is None or not isinstance(qa.get("question"), str) or "id" not in qa:
                raise _json_fail(path, f"{where}, question {qa.get('id')!r}", f"expected an `id`, a `question` and "
                                 f"one answer whose `answer_start` lies in a sentence of `sentence_breaks`, got "
                                 f"answers {qa.get('answers')}")
            answer_id, answer = candidates[sentence]
            examples.append({"id": qa["id"], "query": qa["question"], "answer_id": answer_id, "answer": answer,
                             "candidates": candidates, "lang": lang})
    return examples


def _valid_breaks(breaks, context: str) -> bool:
    return isinstance(breaks, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(offset, int) for offset in pair)
        and 0 <= pair[0] < pair[1] <= len(context) for pair in breaks)


# Mewsli-X in the layout google-research/xtreme's scripts/download_data.sh (`download_mewslix`) leaves, with the fields
# of third_party/utils_mewslix.py (adapted from google-research's mewsli_x/schema.py, whose README documents them):
#   wikipedia_pairs-{train,dev}.jsonl  one MentionEntityPair per line: {"contextual_mention": {"context", "mention"},
#                                      "entity"}, English
#   wikinews_mentions-{dev,test}.jsonl one ContextualMentions per line: {"context", "mentions": [mention, ...]}
#   candidate_set_entities.jsonl       one Entity per line: {"entity_id", "title", "description", "sentence_spans", ...}
# context: {"language", "text", "sentence_spans": [{"start", "end"}], ...}; mention: {"example_id", "entity_id",
# "mention_span": {"start", "end", "text"}}.
MEWSLIX_LAYOUT = ("a Mewsli-X mention-entity pair {contextual_mention: {context, mention}, entity} or an article "
                  "{context, mentions}, with context {language, text, sentence_spans} and mentions {example_id, "
                  "entity_id, mention_span: {start, end, text}}")
_MARKED_SPAN = re.compile(r"\{(.*?)\}")


def _read_mewslix_jsonl(path: Path, spec: TaskSpec, lang: str) -> list[Example]:
    """The mentions in `lang` of a Mewsli-X pair or article file: training pairs carry their entity's description,
    article mentions only the entity id (its description is in the candidate set)."""
    examples = []
    for line, record in _read_jsonl(path):
        try:
            examples.extend(_mewslix_examples(record, lang))
        except (KeyError, TypeError, AttributeError, IndexError) as error:
            raise _fail(path, line, f"missing or malformed field ({type(error).__name__}: {error}); expected "
                                    f"{MEWSLIX_LAYOUT}") from None
        except ValueError as error:
            raise _fail(path, line, str(error)) from None
    return examples


def _mewslix_examples(record: dict, lang: str) -> list[Example]:
    if "contextual_mention" in record:
        contextual = record["contextual_mention"]
        pairs, answer = [(contextual["context"], contextual["mention"])], _entity_text(record["entity"])
    else:
        pairs, answer = [(record["context"], mention) for mention in record["mentions"]], ""
    return [{"id": mention["example_id"], "query": _mention_query(context, mention), "answer_id": mention["entity_id"],
             "answer": answer, "lang": lang}
            for context, mention in pairs if context["language"] == lang]


def _mention_query(context: dict, mention: dict) -> str:
    """The mention in its sentence, as XTREME's baseline encodes it (`utils_mewslix.preprocess_mention`): the mention,
    a colon, then its sentence with the mention between `{ }` (braces already in the sentence become parentheses).

    Raises:
        ValueError: the span does not match the text (e.g. an article whose text was not restored), or it crosses a
            sentence boundary.
    """
    text, span = context["text"], mention["mention_span"]
    start, end, surface = span["start"], span["end"], span["text"]
    if text[start:end] != surface or not surface:
        raise ValueError(f"mention {mention['example_id']}: mention_span text {surface!r} is not context.text"
                         f"[{start}:{end}] ({text[start:end]!r}); WikiNews texts must be restored with Mewsli-X's "
                         "get-mewsli-x.sh")
    sentence = next(((first, last) for first, last in _spans(context["sentence_spans"])
                     if first <= start and end <= last), None)
    if sentence is None:
        raise ValueError(f"mention {mention['example_id']}: span {start}-{end} lies in no single sentence of "
                         "context.sentence_spans")
    left, right = (_MARKED_SPAN.sub(r"(\1)", part) for part in (text[sentence[0]:start], text[end:sentence[1]]))
    return _normalized_spaces(f"{surface}: {left} {{ {surface} }} {right}")


def _entity_text(entity: dict) -> str:
    """An entity's description sentences, as XTREME's baseline encodes it (`preprocess_entity_description`)."""
    description = entity["description"]
    return _normalized_spaces(" ".join(description[first:last] for first, last in _spans(entity["sentence_spans"])))


def _spans(spans: list[dict]) -> list[tuple[int, int]]:
    return [(span["start"], span["end"]) for span in spans]


def _normalized_spaces(text: str) -> str:
    """Newlines become spaces and double spaces single ones, once, as in XTREME's Mewsli-X preprocessing."""
    return " ".join(text.splitlines()).replace("  ", " ").strip()


def _read_mewslix_entities(path: Path) -> list[tuple[str, str]]:
    """(entity id, description text) per line of a Mewsli-X candidate set file."""
    entities = []
    for line, record in _read_jsonl(path):
        try:
            entities.append((record["entity_id"], _entity_text(record)))
        except (KeyError, TypeError, AttributeError, IndexError) as error:
            raise _fail(path, line, f"missing or malformed field ({type(error).__name__}: {error}); expected an "
                                    "entity {entity_id, description, sentence_spans: [{start, end}]}") from None
    return entities


READERS: dict[str, Callable[[Path, TaskSpec, str], list[Example]]] = {
    "tsv_pair": _read_tsv_pair,
    "anli_csv": _read_anli_csv,
    "sst2_tsv": _read_sst2_tsv,
    "conll": _read_conll,
    "copa_jsonl": _read_copa_jsonl,
    "siqa_jsonl": _read_siqa_jsonl,
    "commonsenseqa_jsonl": _read_commonsenseqa_jsonl,
    "hellaswag_jsonl": _read_hellaswag_jsonl,
    "cosmosqa_csv": _read_cosmosqa_csv,
    "squad_json": _read_squad_json,
    "xquad_r_json": _read_xquad_r_json,
    "mewslix_jsonl": _read_mewslix_jsonl,
}
CANDIDATE_READERS: dict[str, Callable[[Path], list[tuple[str, str]]]] = {"mewslix_jsonl": _read_mewslix_entities}


def _utf8_checked(read: Callable) -> Callable:
    """`read` (a reader given the file's path first), where a file that is not UTF-8 ends in one error naming its
    line, byte offset and byte (`components.errors.not_utf8`), not in the decoder's traceback."""

    @functools.wraps(read)
    def reading(path: Path, *args):
        try:
            return read(path, *args)
        except UnicodeDecodeError as error:
            raise not_utf8(path, error) from None

    return reading


READERS = {file_format: _utf8_checked(read) for file_format, read in READERS.items()}
CANDIDATE_READERS = {file_format: _utf8_checked(read) for file_format, read in CANDIDATE_READERS.items()}


def _local_paths(spec: TaskSpec, split: str, lang: str, root: Path) -> list[Path]:
    return [root / pattern.format(lang=lang) for pattern in spec.files.get(split, ())]


def _local_gap(spec: TaskSpec, split: str, lang: str, root: Path) -> str:
    """Why the local XTREME layout cannot serve `split` in `lang`, from the registry and which files exist; "" when
    it can, though a file may still turn out to hold no labels when read (`_local_labels_gap`)."""
    paths = _local_paths(spec, split, lang, root)
    if split in spec.withheld_label_splits:
        return f"the XTREME layout withholds {spec.name} {split} labels, so local files are never scored"
    if not paths:
        return f"the XTREME layout has no {split} split for {spec.name}"
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        return f"missing data file(s): {', '.join(missing)} (data root {root}; set {DATA_ROOT_ENV} to change it)"
    return ""


def _withheld_gap(withheld: UnlabeledSplitError) -> str:
    return f"labels withheld in {withheld.path} ({withheld.why})"


def _local_labels_gap(spec: TaskSpec, split: str, lang: str, root: Path) -> str:
    """`_local_gap`, and where the files exist, whether they hold labels: a real XTREME download keeps test files
    whose labels its preprocessing blanked (words-only tag files, blanked answers, label-less rows), which the bundle
    leaves out. The files are read; a malformed one raises."""
    gap = _local_gap(spec, split, lang, root)
    if gap:
        return gap
    try:
        _read_local(spec, split, lang, root)
    except UnlabeledSplitError as withheld:
        return _withheld_gap(withheld)
    return ""


def _read_local(spec: TaskSpec, split: str, lang: str, root: Path) -> list[Example]:
    reader = READERS.get(spec.file_format)
    if reader is None:
        raise XstiltsInputError(f"task {spec.name!r} ({spec.file_format} files) has no example reader")
    return [example for path in _local_paths(spec, split, lang, root) for example in reader(path, spec, lang)]


def _on_hub(spec: TaskSpec, split: str) -> bool:
    return spec.hf_dataset is not None and split in spec.hf_splits


def _hub_gap(spec: TaskSpec, split: str, lang: str) -> str:
    """Why the Hugging Face Hub cannot serve `split` in `lang` here ("" when it can, as far as can be told without
    downloading): no dataset registered, or the Hub offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and no prepared
    copy of the split in the datasets cache, where `datasets` would look for one."""
    if not _on_hub(spec, split):
        return f"no Hugging Face dataset is registered for {spec.name} {split}"
    import datasets  # imported here: offline users never pay for it

    if not datasets.config.HF_HUB_OFFLINE:
        return ""
    dataset_id, config = spec.hf_dataset
    config_name = config.format(lang=lang) if config else None
    hub_split = spec.hf_splits[split]
    try:
        cached = datasets.load_dataset_builder(dataset_id, config_name).info.splits or {}
    except (OSError, ValueError):  # what `datasets` raises offline for a dataset it has not cached
        cached = {}
    if hub_split in cached:
        return ""
    return (f"the Hugging Face Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and its datasets cache "
            f"({datasets.config.HF_DATASETS_CACHE}) has no {dataset_id}{f' {config_name}' if config_name else ''} "
            f"{hub_split} split")


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
    prefix = f"{spec.hf_id_lang_prefixes[lang]}-" if spec.hf_id_lang_prefixes else ""
    return [convert(row, spec, lang, source, index) for index, row in enumerate(rows, start=1)
            if not prefix or row["id"].startswith(prefix)]


def _hub_label(row: dict, spec: TaskSpec, source: str, index: int) -> str:
    label_id = row["label"]
    if label_id < 0:  # GLUE-style test splits mark withheld labels with -1
        raise UnlabeledSplitError(source, f"row {index} has label {label_id}")
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
    """SQuAD-schema rows; SQuAD v2's unanswerable questions keep their empty answer lists (see `task_types`)."""
    answers = {"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])}
    return {"id": row["id"], "context": row["context"], "question": row["question"], "answers": answers, "lang": lang}


def _hub_siqa(row: dict, spec: TaskSpec, lang: str, source: str, index: int) -> Example:
    """allenai/social_i_qa rows: the local file's fields, but the answer as `label` "1"-"3" instead of `correct`."""
    choices = [_field(row, f"answer{letter}", source, index) for letter in "ABC"]
    return {"context": _field(row, "context", source, index), "question": _field(row, "question", source, index),
            "choices": choices, "label": _choice_index(_field(row, "label", source, index), 3, source, index, first=1),
            "lang": lang}


HUB_CONVERTERS = {
    "tsv_pair": _hub_pair,
    "anli_csv": _hub_pair,
    "sst2_tsv": _hub_single,
    "conll": _hub_tags,
    "squad_json": _hub_squad,
    "copa_jsonl": _copa_example,
    "commonsenseqa_jsonl": _commonsenseqa_example,
    "hellaswag_jsonl": _hellaswag_example,
    "cosmosqa_csv": _cosmosqa_example,
    "siqa_jsonl": _hub_siqa,
}


def load_split(spec: TaskSpec, split: str, lang: str, root: Path | None = None) -> list[Example]:
    """All labeled examples of one split in one language: local files first, then the Hub.

    A split whose labels XTREME blanks is never read from the XTREME layout, nor is a local file that holds no
    labels; only the Hub (which keeps the labels for some tasks) can serve them.
    """
    spec.check_lang(lang, training=split != "test")
    root = root or data_root()
    local = _local_gap(spec, split, lang, root)
    if not local:
        try:
            return _read_local(spec, split, lang, root)
        except UnlabeledSplitError as withheld:
            if not _on_hub(spec, split):
                raise
            local = _withheld_gap(withheld)
    try:
        return _from_hub(spec, split, lang)
    except XstiltsInputError:
        raise
    except Exception as error:  # any Hub failure ends in the one message below, with its reason
        raise XstiltsInputError(_missing_message(spec, split, lang, local, error)) from None


def _missing_message(spec: TaskSpec, split: str, lang: str, local: str, error: Exception) -> str:
    """`local`: why the local layout cannot serve the split (`_local_gap`)."""
    alternative = ", or use protocol=dev-split" if spec.dev_split else ""
    return (f"cannot load {spec.name} {split} [{lang}]: {local}; the Hugging Face dataset path failed too "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Obtain the file with "
            f"google-research/xtreme scripts/download_data.sh or go online{alternative}.")


def candidate_pool(spec: TaskSpec, examples: Iterable[Example], root: Path | None = None) -> list[tuple[str, str]]:
    """The (candidate id, text) pairs a dual-encoder task retrieves from, each id once, in first-seen order.

    Where the registry names a `candidates` file (Mewsli-X's entity set), that file; otherwise every candidate of the
    given examples (LAReQA: each sentence of each paragraph that has a question, in every language passed, as
    `utils_lareqa.load_data` builds its pool).
    """
    if "candidates" not in spec.files:
        pool = {candidate_id: text for example in examples for candidate_id, text in example["candidates"]}
        return list(pool.items())
    root = root or data_root()
    paths = _local_paths(spec, "candidates", "", root)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise XstiltsInputError(f"missing candidate file(s): {', '.join(missing)} (data root {root}; set "
                                f"{DATA_ROOT_ENV} to change it); obtain them with google-research/xtreme "
                                "scripts/download_data.sh")
    read = CANDIDATE_READERS[spec.file_format]
    return list({candidate_id: text for path in paths for candidate_id, text in read(path)}.items())


# Sentence ends in English prose: . ? or ! with any closing quotes or brackets and Wikipedia citation marks ("[8]",
# "[8]:1", "[note 2]") after it, then white space and what can open a sentence.
_SENTENCE_END = re.compile(r"""[.?!]["'\u201d\u2019)\]]*"""
                           r"""(?:\[[^\]\n]{1,12}\](?::[\d,\u2013-]+)?)*"""
                           r"""\s+(?=["'\u201c(\[]?[A-Z0-9])""")
_ABBREVIATIONS = frozenset("Mr Mrs Ms Dr Prof St Mt Ft Jr Sr Gen Col Lt Capt Sgt Gov Sen Rep Rev Fr vs etc approx ca "
                           "No Vol Jan Feb Aug Sep Sept Oct Nov Dec e.g i.e U.S U.K a.k.a".split())


def english_sentence_breaks(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of English text, covering it without gaps (white space after a sentence
    belongs to it).

    A regular-expression breaker in the spirit of XTREME's sed-style `sb_sed.py`, which cuts SQuAD for LAReQA training:
    a break after sentence-final punctuation followed by a capital or a digit, except after a known abbreviation or a
    single capital initial ("J. Smith").
    """
    starts = [0] + [match.end() for match in _SENTENCE_END.finditer(text)
                    if not (text[match.start()] == "." and _ends_in_abbreviation(text[:match.start()]))]
    return list(zip(starts, starts[1:] + [len(text)]))


def _ends_in_abbreviation(text: str) -> bool:
    words = text.split()
    word = words[-1].lstrip("\"'([") if words else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def _qa_retrieval_pairs(examples: list[Example]) -> list[Example]:
    """Extractive QA examples as dual-encoder training pairs: each question retrieves the sentence holding its first
    answer, encoded with its paragraph as LAReQA's candidates are. A candidate's id is its text."""
    pairs = []
    for example in examples:
        context, start = example["context"], example["answers"]["answer_start"][0]
        first, end = next(bounds for bounds in english_sentence_breaks(context) if bounds[0] <= start < bounds[1])
        answer = _candidate_text(context[first:end].strip(), context)
        pairs.append({"id": example["id"], "query": example["question"], "answer_id": answer, "answer": answer,
                      "lang": example["lang"]})
    return pairs


@dataclass(frozen=True)
class ExampleConversion:
    """How a training source of another task type becomes examples of the target's type; `description` is logged."""

    convert: Callable[[list[Example]], list[Example]]
    description: str


EXAMPLE_CONVERSIONS = {
    # XTREME-R trains LAReQA's dual encoder on SQuAD turned into (question, answer sentence + paragraph) pairs.
    (TaskType.EXTRACTIVE_QA, TaskType.DUAL_ENCODER_RETRIEVAL): ExampleConversion(
        _qa_retrieval_pairs, "question -> answer sentence + paragraph (regex sentence breaks)"),
}


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
        return {**{f"protocol_{name}_items": item_ranges(indices) for name, indices in parts.items()},
                "protocol_split_sizes": ", ".join(f"{name} {len(indices)}" for name, indices in parts.items()),
                "protocol_split_fingerprint": fingerprint}


def item_ranges(indices: tuple[int, ...] | range) -> str:
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
        raise XstiltsInputError(f"task {spec.name!r} has no dev-split protocol; use protocol=standard")
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
            raise XstiltsInputError(f"train_source_override and select_holdout apply to the standard and target-dev "
                                    f"protocols; dev-split trains and selects on cuts of {spec.name}'s own dev pool")
        return [_dev_split_stage(spec, lang, root)]
    *earlier, last = _training_sources(spec, train_source)
    train = load_split(last, "train", lang, root)
    params = {"data_protocol": protocol, "train_source": last.name}
    conversion = EXAMPLE_CONVERSIONS.get((last.task_type, spec.task_type))
    if conversion:
        train, params = conversion.convert(train), {**params, "train_source_conversion": conversion.description}
    final = (_held_out_stage(spec, last, train, select_holdout, params) if select_holdout
             else TrainingData(spec.name, train, _english_dev(spec, lang, root), {**params, "select_source": "dev"}))
    return [_earlier_stage(source, lang, root) for source in earlier] + [final]


def english_training_gap(spec: TaskSpec, protocol: str, train_source: str = "", select_holdout: int = 0) -> str:
    """What `training_stages` lacks here to train `spec` on English ("" when nothing): an English split, in local
    files or on the Hub (offline: in its datasets cache), for each stage's training and selection. Told from the
    registry and which files exist, without reading them, so that a study grid refuses such a target before any step
    runs; `train_source` and `select_holdout` are the stand-ins.
    """
    if resolve_protocol(spec, protocol) == "dev-split":
        if not spec.dev_split:
            return f"{spec.name} has no English dev pool to split"
        gap = _english_gap(spec, "dev")
        return f"{spec.name} has no English dev pool here: {gap}" if gap else ""
    *earlier, last = _training_sources(spec, train_source)
    for source in earlier:  # as `_earlier_stage`: a split of the dev pool, or the train split and dev selection
        gap = _english_gap(source, "dev") or ("" if source.dev_split else _english_gap(source, "train"))
        if gap:
            return f"its training source {source.name} has no English train and dev data here: {gap}"
    gap = _english_gap(last, "train")
    if gap:
        return (f"{last.name} has no English train split here: {gap} (a stand-in: train_source_override: <a task of "
                "its type>)")
    gap = "" if select_holdout else _english_gap(spec, "dev")
    if gap:
        return (f"{spec.name} has no English dev split to select on here: {gap} (a stand-in: select_holdout: N, the "
                "last N training items)")
    return ""


def source_training_gap(spec: TaskSpec, lang: str, root: Path | None = None) -> str:
    """What an intermediate arm lacks to train `spec` in its source language `lang` ("" when nothing): tasks scored
    without task training have no training data at all; English is `english_training_gap`'s; another language needs
    its local train file or a Hub train split."""
    if spec.train_sources is None:
        return f"{spec.name} is evaluated without task training: it has no training data"
    if lang == "en":
        return english_training_gap(spec, "auto")
    return _split_gap(spec, "train", lang, root or data_root())


def _english_gap(spec: TaskSpec, split: str) -> str:
    return _split_gap(spec, split, "en", data_root())


def _split_gap(spec: TaskSpec, split: str, lang: str, root: Path) -> str:
    """Why neither local files nor the Hub can serve labeled `split` in `lang` here ("" when one can): the files'
    presence, not their content, which the phase reads."""
    local = _local_gap(spec, split, lang, root)
    if not local:
        return ""
    hub = _hub_gap(spec, split, lang)
    return f"{local}; {hub}" if hub else ""


def _training_sources(spec: TaskSpec, train_source: str) -> list[TaskSpec]:
    if not train_source:
        return [get_task(name) for name in spec.train_sources] if spec.train_sources else [spec]
    source = get_task(train_source)
    if source.task_type is not spec.task_type and (source.task_type, spec.task_type) not in EXAMPLE_CONVERSIONS:
        raise XstiltsInputError(f"train_source_override {source.name} is a {source.task_type.value} task; {spec.name} "
                                f"needs one of its own type, {spec.task_type.value}")
    return [source]


def _english_dev(spec: TaskSpec, lang: str, root: Path | None) -> list[Example]:
    try:
        return load_split(spec, "dev", lang, root)
    except XstiltsInputError as error:
        raise XstiltsInputError(f"{error} To select on held-out training items instead, pass select_holdout=N."
                                ) from None


def _held_out_stage(spec: TaskSpec, source: TaskSpec, train: list[Example], holdout: int,
                    params: dict[str, str]) -> TrainingData:
    """The last `holdout` training items select; their item range in the source's train split is logged."""
    if not 0 < holdout < len(train):
        raise XstiltsInputError(f"select_holdout {holdout}: expected 1 to {len(train) - 1}, since {source.name} "
                                f"train has {len(train)} items")
    cut = len(train) - holdout
    return TrainingData(spec.name, train[:cut], train[cut:],
                        {**params, "select_source": f"{source.name} train",
                         "protocol_train_items": item_ranges(range(cut)),
                         "protocol_select_items": item_ranges(range(cut, len(train)))})


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


def stage_sizes(stage: TrainingData, config) -> dict[str, int]:
    """The examples a run trains and selects on, after the caps of `config` (a `components.training.TrainConfig`:
    `max_train_examples`, `max_select_examples`), and those the stage holds before them (`n_*_available`)."""
    return {"n_train_examples": len(config.train_subset(stage.train)), "n_train_available": len(stage.train),
            "n_select_examples": len(config.select_subset(stage.select)), "n_select_available": len(stage.select)}


def stage_params(stages: list[TrainingData], config) -> dict[str, str]:
    """Flat params describing the stages and their sizes under `config`'s caps (`stage_sizes`): unprefixed for one
    stage, `stage<i>_` prefixed for several."""
    params = {}
    for number, stage in enumerate(stages, start=1):
        prefix = f"stage{number}_" if len(stages) > 1 else ""
        described = {**({"task": stage.task} if prefix else {}), **stage.params, **stage_sizes(stage, config)}
        params.update({f"{prefix}{key}": value for key, value in described.items()})
    if len(stages) > 1:  # the run's own protocol, which tells `evaluate` what it may score: its task's (last) stage's
        params["data_protocol"] = stages[-1].params["data_protocol"]
    return params


@dataclass(frozen=True)
class EvaluationSplit:
    """The split ("test" or "dev") a zero-shot evaluation scores in one language, and why (logged by `evaluate` as
    `eval_split/<task>/<lang>` and `eval_split_reason/<task>/<lang>`)."""

    split: str
    reason: str


PROTOCOL_SPLIT_REASONS = {"dev-split": "protocol dev-split scores the evaluation part of the dev pool",
                          "target-dev": "protocol target-dev scores each language's dev split"}


def choose_evaluation_split(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None) -> EvaluationSplit:
    """The split a zero-shot evaluation scores in `lang` under `protocol`, and why.

    Dev-split and target-dev score dev items. Standard scores the benchmark's test split where its labels are in the
    local XTREME layout, else the local labeled dev split, else, for users online, the test split on the Hugging Face
    Hub. Test labels are missing locally where the registry says XTREME blanks them (XNLI), where the file is absent
    (UD-POS languages whose only test treebank is PUD, which the bundle leaves out), and where the file holds none (a
    real XTREME download's words-only UD-POS and PAN-X test files, blanked QA answers, label-less rows): the local
    files are read to tell. Decided per language, so one task can mix test and dev.

    Raises:
        XstiltsInputError: an unknown protocol or language, a malformed local file, or, under standard, a language
            with neither a local labeled test or dev file nor a Hub test split (naming the files looked for).
    """
    spec.check_lang(lang)
    protocol = resolve_protocol(spec, protocol)
    if protocol != "standard":
        return EvaluationSplit("dev", PROTOCOL_SPLIT_REASONS[protocol])
    root = root or data_root()
    test_gap = _local_labels_gap(spec, "test", lang, root)
    if not test_gap:
        return EvaluationSplit("test", "labeled local test file")
    dev_gap = _local_labels_gap(spec, "dev", lang, root)
    if not dev_gap:
        return EvaluationSplit("dev", f"test: {test_gap}")
    hub = _hub_gap(spec, "test", lang)
    if not hub:
        return EvaluationSplit("test", f"Hugging Face Hub {spec.hf_dataset[0]} (local test: {test_gap}; local dev: "
                                       f"{dev_gap})")
    raise XstiltsInputError(
        f"cannot evaluate {spec.name} [{lang}]: no labeled test or dev data. test: {test_gap}; dev: {dev_gap}; "
        f"{hub}. Leave the language out (langs) or obtain its files with google-research/xtreme "
        "scripts/download_data.sh."
    )


def evaluation_split(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None) -> str:
    """The split ("test" or "dev") a zero-shot evaluation scores in `lang` under `protocol`: see
    `choose_evaluation_split`."""
    return choose_evaluation_split(spec, protocol, lang, root).split


@dataclass(frozen=True)
class EvaluationSet:
    """What a zero-shot evaluation scores in one language: the split and why, its examples, and which of the
    split's items they are (positions in reader order), so that a prediction file can say what it holds."""

    choice: EvaluationSplit
    examples: list[Example]
    indices: tuple[int, ...]
    split_size: int

    def first(self, n: int) -> "EvaluationSet":
        """The first `n` examples (a debug cap); 0 = all."""
        return replace(self, examples=self.examples[:n], indices=self.indices[:n]) if n else self


def evaluation_set(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None) -> EvaluationSet:
    """The labeled examples a zero-shot evaluation scores in `lang` under `protocol`, from `choose_evaluation_split`'s
    split.

    Dev-split scores the evaluation part of the dev pool: the same items in every language. Target-dev scores each
    language's dev split (jiant's X-STILTs practice where test labels are withheld); the English dev split is also the
    selection set, so the English score is optimistic.
    """
    protocol = resolve_protocol(spec, protocol)
    choice = choose_evaluation_split(spec, protocol, lang, root)
    if protocol != "dev-split":
        examples = load_split(spec, choice.split, lang, root)
        return EvaluationSet(choice, examples, tuple(range(len(examples))), len(examples))
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
    return EvaluationSet(choice, [pool[index] for index in cut.evaluated], cut.evaluated, cut.pool_size)


def evaluation_sets(spec: TaskSpec, protocol: str, languages: Sequence[str],
                    root: Path | None = None) -> dict[str, EvaluationSet]:
    """The `evaluation_set` of each of `languages`, all read before any is scored.

    Raises:
        XstiltsInputError: one error naming every language whose evaluation data cannot be read, and why.
    """
    found, failures = {}, []
    for lang in languages:
        try:
            found[lang] = evaluation_set(spec, protocol, lang, root)
        except XstiltsInputError as error:
            failures.append(f"[{lang}] {error}")
    if failures:
        failed = [lang for lang in languages if lang not in found]
        raise XstiltsInputError(f"cannot evaluate {spec.name} in {len(failed)} of the {len(languages)} languages "
                                f"asked for ({', '.join(failed)}), so none was scored; leave them out (langs) or "
                                "obtain their data:\n  " + "\n  ".join(failures))
    return found


def evaluation_data(spec: TaskSpec, protocol: str, lang: str, root: Path | None = None) -> list[Example]:
    """The examples of `evaluation_set`."""
    return evaluation_set(spec, protocol, lang, root).examples


SELECTED_ON_SCORED_SPLIT = "English dev split is also the selection set"


def optimistic_score_reason(spec: TaskSpec, protocol: str, lang: str, select_holdout: int,
                            root: Path | None = None) -> str:
    """Why a zero-shot score in `lang` is optimistic ("" when it is not): under standard and target-dev the last
    training stage selects on the English dev split (unless `select_holdout` > 0), so an English score on that split
    (`evaluation_split`) is taken on the selection set. Dev-split scores English items that neither train nor select.
    """
    if lang != ZERO_SHOT_SOURCE_LANG or select_holdout or resolve_protocol(spec, protocol) == "dev-split":
        return ""
    return SELECTED_ON_SCORED_SPLIT if evaluation_split(spec, protocol, lang, root) == "dev" else ""


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

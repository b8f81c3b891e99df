"""Unlabeled text in one language, for training its language adapter by masked language modelling.

Offline, the text is every sentence and context of every task file the bundle holds in that language (premises and
hypotheses, tagged sentences with their tokens joined by spaces, QA contexts and questions, multiple-choice contexts
and choices, Tatoeba and BUCC sentences), deduplicated. Texts that an evaluation of a studied task scores in that
language are left out (no evaluation text in adapter training): the `evaluation_set` items of each studied task
under each of the study's protocols; every text of a retrieval task (it has no training data); and, for LAReQA,
every text of XQuAD, whose paragraphs and questions it retrieves. LAReQA and Mewsli-X are not sources: LAReQA's text
is XQuAD's and Mewsli-X is not in the bundle. Online, a Hugging Face corpus (e.g. Wikipedia) can be read instead, its
lines filtered the same way.

The corpus records what it left out of each studied task (`TaskExclusion`): per protocol (`auto` resolved per task),
the split and items an evaluation scores in the language. `check_exclusion_covers` refuses an adapter for an evaluation
whose scored items are not all among them.
"""

import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from components.data import (COPA_QUESTIONS, PROTOCOLS, READERS, EvaluationSet, Example, UnlabeledSplitError,
                             evaluation_set, item_ranges, resolve_protocol)
from components.errors import XstiltsInputError
from components.progress import banner
from components.retrieval import read_aligned_pairs, read_bucc_sentences
from components.settings import data_root
from components.tasks import TASKS, TaskSpec, TaskType

ALL_TASKS = "all"
AUTO_PROTOCOL = "auto"
BUNDLE_SOURCE = "bundle"
HUB_PREFIX = "hf:"
# English template questions XCOPA adds in every language: not text of the language.
TEMPLATE_TEXTS = frozenset(COPA_QUESTIONS.values())
# Tasks whose evaluation texts are another task's texts: LAReQA (XQuAD-R) retrieves XQuAD's paragraphs and questions.
EVALUATES_TEXTS_OF = {"lareqa": "xquad"}
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}([-_][A-Za-z0-9]+)?")
# Readers of the retrieval formats: the `lang` side of the split's files (the first path of the registry pattern).
_RETRIEVAL_READERS: dict[str, Callable[[tuple[Path, ...], str], list[str]]] = {
    "aligned_text": lambda paths, lang: read_aligned_pairs(*paths)[0],
    "bucc": lambda paths, lang: read_bucc_sentences(paths[0], lang).texts,
}
EXCLUDED_ITEMS_PARAM = "corpus_excluded_items"  # `corpus_excluded_items/<task>`: `TaskExclusion.describe()`
EVERY_TEXT = "every text"
NOTHING = "none"


@dataclass(frozen=True)
class ExcludedItems:
    """Under one protocol (resolved), the split and items an evaluation of a task scores in the corpus's language
    (positions in reader order, as `components.data.EvaluationSet`), all of whose texts the corpus left out; no split
    where the protocol evaluates nothing there."""

    protocol: str
    split: str = ""
    items: tuple[int, ...] = ()

    def describe(self) -> str:
        where = f"{self.split} {item_ranges(self.items)}" if self.split else NOTHING
        return f"{self.protocol}: {where}"

    @classmethod
    def parse(cls, text: str) -> "ExcludedItems":
        protocol, _, where = text.partition(": ")
        if where == NOTHING:
            return cls(protocol)
        split, _, ranges = where.partition(" ")
        return cls(protocol, split, _parse_item_ranges(ranges))


@dataclass(frozen=True)
class TaskExclusion:
    """What a corpus left out of one studied task in its language: every text (a retrieval task, or LAReQA, which
    retrieves XQuAD's texts), or per protocol the items an evaluation scores (none where the bundle has no file of
    the task in the language). Logged as the param `corpus_excluded_items/<task>`, e.g. `dev-split: dev 1998-2489`."""

    task: str
    per_protocol: tuple[ExcludedItems, ...] = ()
    every_text: bool = False

    def describe(self) -> str:
        if self.every_text:
            return EVERY_TEXT
        return "; ".join(entry.describe() for entry in self.per_protocol) or NOTHING

    @classmethod
    def from_params(cls, task: str, params: Mapping[str, str]) -> "TaskExclusion | None":
        """The exclusion a lang_adapter run logged for `task`; None where it logged none (`task` not studied, or a run
        from before these records)."""
        text = params.get(f"{EXCLUDED_ITEMS_PARAM}/{task}")
        if text is None:
            return None
        if text in (EVERY_TEXT, NOTHING):
            return cls(task, every_text=text == EVERY_TEXT)
        return cls(task, tuple(ExcludedItems.parse(entry) for entry in text.split("; ")))

    def not_covered(self, scored: EvaluationSet) -> tuple[int, ...]:
        """The scored items whose texts the corpus may hold: those not left out under any protocol in the same split
        (none when this exclusion covers the evaluation)."""
        if self.every_text:
            return ()
        excluded = {item for entry in self.per_protocol if entry.split == scored.choice.split for item in entry.items}
        return tuple(item for item in scored.indices if item not in excluded)


@dataclass
class SourceStats:
    """What one source contributed: texts read, and how many were dropped as duplicates or evaluation texts."""

    source: str
    read: int = 0
    duplicates: int = 0
    excluded_eval: int = 0

    @property
    def kept(self) -> int:
        return self.read - self.duplicates - self.excluded_eval


@dataclass
class Corpus:
    """The deduplicated texts of one language, with where they came from.

    Attributes:
        texts: the training texts, in source order (or a seeded sample of them, see `capped`).
        sources: one entry per source file or Hub corpus, in reading order.
        excluded_eval_of: the studied tasks whose evaluation texts were left out.
        protocols: the protocols the studied tasks are evaluated under, as given (`auto` is resolved per task).
        exclusions: per studied task, what was left out of it.
        eval_texts_of: per studied task with evaluation texts in this language, how many distinct texts it scores.
        available: texts kept before any cap.
    """

    lang: str
    origin: str
    texts: list[str]
    sources: list[SourceStats]
    excluded_eval_of: tuple[str, ...]
    protocols: tuple[str, ...]
    eval_texts_of: dict[str, int]
    exclusions: dict[str, TaskExclusion]
    available: int

    def capped(self, max_texts: int, seed: int) -> "Corpus":
        """At most `max_texts` texts, a seeded sample so that every source is represented; 0 = all."""
        if not max_texts or max_texts >= len(self.texts):
            return self
        sample = random.Random(seed).sample(range(len(self.texts)), max_texts)
        return replace(self, texts=[self.texts[index] for index in sorted(sample)])

    def composition(self) -> dict:
        """Everything about the corpus as JSON-ready data (logged as an artifact)."""
        return {
            "lang": self.lang, "origin": self.origin, "protocols": list(self.protocols),
            "excluded_eval_of": list(self.excluded_eval_of), "eval_texts_of": self.eval_texts_of,
            "excluded_items": {task: exclusion.describe() for task, exclusion in self.exclusions.items()},
            "available_texts": self.available,
            "training_texts": len(self.texts), "training_chars": sum(map(len, self.texts)),
            "sources": [{"source": s.source, "read": s.read, "duplicates": s.duplicates,
                         "excluded_eval": s.excluded_eval, "kept": s.kept} for s in self.sources],
        }

    def params(self) -> dict[str, str]:
        """Flat run params: size, origin and composition (source=kept texts)."""
        return {
            "corpus_origin": self.origin, "corpus_texts": len(self.texts), "corpus_available_texts": self.available,
            "corpus_chars": sum(map(len, self.texts)),
            "corpus_excluded_eval_of": ",".join(self.excluded_eval_of) or "none",
            "corpus_excluded_eval_texts": sum(s.excluded_eval for s in self.sources),
            "corpus_sources": ", ".join(f"{s.source}={s.kept}" for s in self.sources if s.kept) or "none",
            **{f"{EXCLUDED_ITEMS_PARAM}/{task}": exclusion.describe() for task, exclusion in self.exclusions.items()},
        }


def check_language_code(lang: str) -> None:
    if not _LANGUAGE_CODE.fullmatch(lang):
        raise XstiltsInputError(f"language code {lang!r}: expected an ISO 639-1/3 code such as sw, yo or qu")


def studied_tasks(names: str) -> tuple[str, ...]:
    """The `exclude_eval_of` option: `all` (every registry task), `none`, or task names separated by commas."""
    if names.strip() == ALL_TASKS:
        return tuple(sorted(TASKS))
    if names.strip() in ("", "none"):
        return ()
    chosen = tuple(name.strip() for name in names.split(",") if name.strip())
    unknown = [name for name in chosen if name not in TASKS]
    if unknown:
        raise XstiltsInputError(f"exclude_eval_of: unknown task(s) {', '.join(unknown)}; expected 'all', 'none' or "
                                f"task names from: {', '.join(sorted(TASKS))}")
    return chosen


def evaluation_protocols(names: str) -> tuple[str, ...]:
    """The `protocol` option: `auto` or protocols separated by commas, under which the studied tasks are evaluated
    (a study's targets may differ; its adapters serve them all)."""
    chosen = tuple(dict.fromkeys(name.strip() for name in names.split(",") if name.strip()))
    unknown = [name for name in chosen if name not in (AUTO_PROTOCOL, *PROTOCOLS)]
    if not chosen or unknown:
        raise XstiltsInputError(f"protocol {names!r}: expected {AUTO_PROTOCOL} or protocols separated by commas, "
                                f"from: {', '.join(PROTOCOLS)}")
    return chosen


def build_corpus(lang: str, text_source: str, excluded_eval_of: tuple[str, ...],
                 protocols: tuple[str, ...] = (AUTO_PROTOCOL,), max_hub_texts: int = 0,
                 root: Path | None = None) -> Corpus:
    """The training texts of `lang` from `text_source`: `bundle`, or `hf:<dataset>:<config>[:<field>]` (online).

    Evaluation texts are always those of the bundle, so that an online corpus that happens to hold them (XQuAD's
    paragraphs are Wikipedia's) loses them too: those of each studied task under each of `protocols`.

    Raises:
        XstiltsInputError: a malformed language code or text source; or no text is left (naming what was found and
            what was excluded).
    """
    check_language_code(lang)
    root = root or data_root()
    banner(f"collecting {lang} text from {text_source} (without the evaluation items of {len(excluded_eval_of)} "
           "tasks)")
    bundle = _bundle_sources(lang, root)
    if text_source == BUNDLE_SOURCE:
        sources = [(f"{task} {split}", texts) for task, split, texts in bundle]
    elif text_source.startswith(HUB_PREFIX):
        sources = [_hub_source(text_source, lang, max_hub_texts)]
    else:
        raise XstiltsInputError(f"text_source {text_source!r}: expected '{BUNDLE_SOURCE}' or "
                                f"'{HUB_PREFIX}<dataset>:<config>[:<field>]', "
                                "e.g. hf:wikimedia/wikipedia:20231101.{lang}")
    evaluation, exclusions = _evaluation_texts(lang, excluded_eval_of, protocols, root, bundle)
    corpus = _deduplicated(lang, text_source, sources, evaluation, excluded_eval_of, protocols, exclusions)
    if not corpus.texts:
        raise XstiltsInputError(_empty_corpus_message(corpus, root))
    return corpus


def _bundle_sources(lang: str, root: Path) -> list[tuple[str, str, list[str]]]:
    """(task, split, texts) for every task file in `lang` under the bundle root, each file read once."""
    sources, seen_paths = [], set()
    for spec in sorted(TASKS.values(), key=lambda spec: spec.name):
        if lang not in spec.langs or spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL:
            continue
        for split, patterns in spec.files.items():
            paths = tuple(root / pattern.format(lang=lang) for pattern in patterns)
            if split in spec.withheld_label_splits or paths in seen_paths or not all(p.is_file() for p in paths):
                continue
            seen_paths.add(paths)
            try:
                sources.append((spec.name, split, _read_texts(spec, paths, lang)))
            except UnlabeledSplitError:
                continue  # a real XTREME download's blanked test file: a withheld split, as the registry's are
    return sources


def _read_texts(spec: TaskSpec, paths: tuple[Path, ...], lang: str) -> list[str]:
    if spec.task_type is TaskType.RETRIEVAL:
        return _RETRIEVAL_READERS[spec.file_format](paths, lang)
    reader = READERS[spec.file_format]
    return [text for path in paths for example in reader(path, spec, lang) for text in example_texts(example)]


def example_texts(example: Example) -> list[str]:
    """The natural-language texts of one canonical example (see `components.data`), templates left out."""
    texts = [example[key] for key in ("text_a", "text_b", "context", "question", "query") if key in example]
    texts += example.get("choices", [])
    if "tokens" in example:
        texts.append(" ".join(example["tokens"]))
    return [text.strip() for text in texts if text.strip() and text not in TEMPLATE_TEXTS]


def _evaluation_texts(lang: str, studied: Iterable[str], protocols: tuple[str, ...], root: Path,
                      bundle: list[tuple[str, str, list[str]]]) -> tuple[dict[str, set[str]], dict[str, TaskExclusion]]:
    """Per studied task, the texts a zero-shot evaluation of it may score in `lang` under any of `protocols`, and
    what they are (`TaskExclusion`).

    Only tasks with files in `lang` in the bundle count: a task without local data there scores no local text.
    """
    texts_of = {}
    for task, _, texts in bundle:
        texts_of.setdefault(task, set()).update(texts)
    evaluation, exclusions = {}, {}
    for name in studied:
        spec = TASKS[EVALUATES_TEXTS_OF.get(name, name)]
        if spec.name not in texts_of:
            exclusions[name] = TaskExclusion(name)
        elif spec.task_type is TaskType.RETRIEVAL or name in EVALUATES_TEXTS_OF:
            evaluation[name] = texts_of[spec.name]
            exclusions[name] = TaskExclusion(name, every_text=True)
        else:
            evaluated = {protocol: _evaluation_set(spec, protocol, lang, root)
                         for protocol in dict.fromkeys(resolve_protocol(spec, protocol) for protocol in protocols)}
            evaluation[name] = {text for scored in evaluated.values() if scored for example in scored.examples
                                for text in example_texts(example)}
            exclusions[name] = TaskExclusion(name, tuple(
                ExcludedItems(protocol, scored.choice.split, scored.indices) if scored else ExcludedItems(protocol)
                for protocol, scored in evaluated.items()))
    return evaluation, exclusions


def _evaluation_set(spec: TaskSpec, protocol: str, lang: str, root: Path) -> EvaluationSet | None:
    """What `evaluate` scores for `spec` in `lang`; None where the protocol does not apply to the task."""
    try:
        return evaluation_set(spec, protocol, lang, root)
    except XstiltsInputError:
        # No evaluation of this task in this language under this protocol (e.g. dev-split for a task without one,
        # or no labeled test or dev split): it scores no text to leave out.
        return None


def check_exclusion_covers(adapter_run_id: str, adapter_params: Mapping[str, str], spec: TaskSpec, protocol: str,
                           lang: str, max_examples: int = 0) -> None:
    """Refuses the `lang` adapter of lang_adapter run `adapter_run_id` (its params) for an evaluation of `spec` in
    `lang` under `protocol` (its first `max_examples` items; 0 = all) unless the adapter's corpus left out the texts
    of every item the evaluation scores: same split, scored items a subset of those excluded under any protocol.

    Raises:
        XstiltsInputError: naming the run, the task, what its corpus left out and what the evaluation scores.
    """
    protocol = resolve_protocol(spec, protocol)
    scored = evaluation_set(spec, protocol, lang).first(max_examples)
    exclusion = TaskExclusion.from_params(spec.name, adapter_params)
    missing = exclusion.not_covered(scored) if exclusion else scored.indices
    if not missing:
        return
    left_out = (exclusion.describe() if exclusion else
                f"nothing recorded (corpus_excluded_eval_of: {adapter_params.get('corpus_excluded_eval_of', 'none')}; "
                f"runs from before {EXCLUDED_ITEMS_PARAM}/<task> was logged record nothing)")
    raise XstiltsInputError(
        f"lang_adapter run {adapter_run_id} may have trained on text this evaluation scores: {spec.name} [{lang}] "
        f"scores {ExcludedItems(protocol, scored.choice.split, scored.indices).describe()}, and the adapter's corpus "
        f"left out of {spec.name}: {left_out}; not left out: {scored.choice.split} {item_ranges(missing)}. Retrain "
        f"the {lang} adapter with -P exclude_eval_of=all (or a list naming {spec.name}) -P protocol={protocol} (or "
        f"a list of protocols naming it)")


def check_exclusion_recorded(adapter_run_id: str, adapter_params: Mapping[str, str], task: str) -> None:
    """Refuses a lang_adapter run for training `task` unless its corpus recorded what it left out of `task`'s
    evaluation texts (the evaluation then checks that this covers what it scores: `check_exclusion_covers`)."""
    if TaskExclusion.from_params(task, adapter_params) is None:
        raise XstiltsInputError(
            f"lang_adapter run {adapter_run_id} recorded no exclusion of {task}'s evaluation texts, so it may have "
            f"trained on them (its corpus left out those of: {adapter_params.get('corpus_excluded_eval_of', 'none')}; "
            f"runs from before {EXCLUDED_ITEMS_PARAM}/<task> was logged record none); train the "
            f"{adapter_params.get('lang')} adapter with -P exclude_eval_of=all or a list that names {task}")


def _parse_item_ranges(text: str) -> tuple[int, ...]:
    """The inverse of `components.data.item_ranges`: `0-3,5` -> (0, 1, 2, 3, 5)."""
    items = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        items.extend(range(int(first), int(last or first) + 1))
    return tuple(items)


def _deduplicated(lang: str, origin: str, sources: list[tuple[str, list[str]]], evaluation_of: dict[str, set[str]],
                  excluded_eval_of: tuple[str, ...], protocols: tuple[str, ...],
                  exclusions: dict[str, TaskExclusion]) -> Corpus:
    evaluation = set().union(*evaluation_of.values())
    kept, seen, stats = [], set(), []
    for name, texts in sources:
        entry = SourceStats(name, read=len(texts))
        for text in texts:
            if text in evaluation:
                entry.excluded_eval += 1
            elif text in seen:
                entry.duplicates += 1
            else:
                seen.add(text)
                kept.append(text)
        stats.append(entry)
    eval_texts_of = {name: len(texts) for name, texts in evaluation_of.items() if texts}
    return Corpus(lang, origin, kept, stats, excluded_eval_of, protocols, eval_texts_of, exclusions, len(kept))


def _empty_corpus_message(corpus: Corpus, root: Path) -> str:
    if not corpus.sources:
        where = (f"the bundle at {root} holds no task file in language {corpus.lang!r}"
                 if corpus.origin == BUNDLE_SOURCE else f"{corpus.origin} returned no text for {corpus.lang!r}")
        return f"empty text corpus for language {corpus.lang!r}: {where}; pass text_source={HUB_PREFIX}... (online)"
    found = ", ".join(f"{s.source} {s.read}" for s in corpus.sources)
    return (f"empty text corpus for language {corpus.lang!r}: found {found} texts, all of them duplicates or "
            f"evaluation texts of studied tasks ({', '.join(sorted(corpus.eval_texts_of))}); no evaluation text may "
            f"train an adapter. Narrow exclude_eval_of to the tasks actually studied, or pass text_source="
            f"{HUB_PREFIX}... (online)")


def _hub_source(text_source: str, lang: str, max_texts: int) -> tuple[str, list[str]]:
    """The first `max_texts` non-empty lines of a Hugging Face corpus, streamed (e.g. Wikipedia paragraphs)."""
    dataset_id, config, text_field = _parse_hub_source(text_source)
    if max_texts <= 0:
        raise XstiltsInputError(f"text_source {text_source} streams a corpus: pass max_texts=N (> 0) to bound it")
    import datasets  # imported here: offline users never pay for it

    try:
        rows = datasets.load_dataset(dataset_id, config.format(lang=lang), split="train", streaming=True)
        texts = []
        for row in rows:
            texts += [line.strip() for line in str(row[text_field]).split("\n") if line.strip()]
            if len(texts) >= max_texts:
                break
    except Exception as error:  # any Hub failure ends in one message with its reason
        raise XstiltsInputError(f"cannot read {text_source} for {lang!r}: {type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''}") from None
    return f"{dataset_id} {config.format(lang=lang)}", texts[:max_texts]


def _parse_hub_source(text_source: str) -> tuple[str, str, str]:
    parts = text_source.removeprefix(HUB_PREFIX).split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise XstiltsInputError(f"text_source {text_source!r}: expected {HUB_PREFIX}<dataset>:<config>[:<field>], "
                                "e.g. hf:wikimedia/wikipedia:20231101.{lang}:text")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "text"


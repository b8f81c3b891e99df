"""Tiny Hugging Face Hub datasets, in the exact schemas of the Hub-only tasks (and of the Hub splits and texts the
shipped configs need beyond the bundle: PAWS-X English training, Wikipedia), that `datasets.load_dataset(<hub id>)`
finds offline: the real Hub code path of `components.data.load_split`, with no test hook in production code.

Offline (HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1), datasets 5.0.1 answers `load_dataset("<org>/<name>", config)` from
its cache of a dataset prepared earlier (`load.py`: `CachedDatasetModuleFactory`, then the `cache` packaged builder):
`$HF_DATASETS_CACHE/<org>___<name>/<config>/<version>/<hash>/` holding `dataset_info.json` and one
`<name>-<split>.arrow` file per split. `write_hub_fixtures` writes that layout, so the rows below go through the same
features decoding, split lookup and converters (`components.data.HUB_CONVERTERS`) as a real download would.

Schemas (column names, feature types, label encoding, split names) follow each task's `hub_schema_source` in
`components.tasks`. To run a study that uses Hub-only arms (configs/paper.yaml) offline on these rows:

    from tests.hub_fixtures import hub_env, write_hub_fixtures
    env = hub_env(write_hub_fixtures(Path("/tmp/xstilts-hub")))   # then run with os.environ | env

or, in a test, request the `hub_datasets` fixture (import it into the test module), which sets that environment.
"""

from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
from datasets.arrow_writer import ArrowWriter

from components.tasks import get_task

Value, ClassLabel, Sequence = datasets.Value, datasets.ClassLabel, datasets.Sequence
FIXTURE_HASH = "xstilts-fixture"  # the cache's <hash> folder: any name, one per config
SQUAD_FEATURES = datasets.Features({
    "id": Value("string"), "title": Value("string"), "context": Value("string"), "question": Value("string"),
    "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")}),
})
SQUAD_CONTEXT = "The Normans gave their name to Normandy, a region in France."


@dataclass(frozen=True)
class HubFixture:
    """One Hub dataset config: its features and a few rows per Hub split name."""

    config: str  # the config folder; the Hub's default config name where the task registers None
    features: datasets.Features
    rows: dict[str, list[dict]]


def _squad_row(question_id: str, question: str, answers: list[str]) -> dict:
    return {"id": question_id, "title": "Normans", "context": SQUAD_CONTEXT, "question": question,
            "answers": {"text": answers, "answer_start": [SQUAD_CONTEXT.index(answer) for answer in answers]}}


_MNLI_ROW = {"promptID": 31193, "pairID": "31193n", "premise": "Conceptually cream skimming has two basic dimensions.",
             "premise_binary_parse": "( Conceptually ( cream skimming ) )", "premise_parse": "(ROOT (S))",
             "hypothesis": "Product and geography are what make cream skimming work.",
             "hypothesis_binary_parse": "( Product ( and geography ) )", "hypothesis_parse": "(ROOT (S))",
             "genre": "government", "label": 1}
_HELLASWAG_ROW = {"ind": 24, "activity_label": "Roof shingle removal",
                  "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
                  "ctx": "A man is sitting on a roof. he",
                  "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                              "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
                  "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain", "label": "3"}

# Hub-only task -> its fixture. Label ids and strings are those of the Hub (MNLI 1 = neutral, QQP 1 = duplicate,
# HellaSwag's label a string; GLUE test splits -1, HellaSwag test "").
HUB_FIXTURES = {
    "mnli": HubFixture("default", datasets.Features({
        "promptID": Value("int32"), "pairID": Value("string"), "premise": Value("string"),
        "premise_binary_parse": Value("string"), "premise_parse": Value("string"), "hypothesis": Value("string"),
        "hypothesis_binary_parse": Value("string"), "hypothesis_parse": Value("string"), "genre": Value("string"),
        "label": ClassLabel(names=["entailment", "neutral", "contradiction"])}),
        {"train": [_MNLI_ROW], "validation_matched": [{**_MNLI_ROW, "label": 2}],
         "validation_mismatched": [_MNLI_ROW]}),
    "qqp": HubFixture("qqp", datasets.Features({
        "question1": Value("string"), "question2": Value("string"),
        "label": ClassLabel(names=["not_duplicate", "duplicate"]), "idx": Value("int32")}),
        {split: [{"question1": "How do I learn Python?", "question2": "What is the best way to learn Python?",
                  "label": label, "idx": 0}] for split, label in (("train", 1), ("validation", 0), ("test", -1))}),
    # Two training questions: XQuAD and LAReQA select on the last SQuAD training items (`select_holdout`), and a
    # shrunk study (components.grid.shrunk) holds one back.
    "squad": HubFixture("plain_text", SQUAD_FEATURES, {
        "train": [_squad_row("5733be284776f41900661182", "Where is Normandy?", ["France"]),
                  _squad_row("5733be284776f41900661183", "Who gave their name to Normandy?", ["The Normans"])],
        "validation": [_squad_row("5733be284776f41900661182", "Where is Normandy?", ["France"])]}),
    "squad_v2": HubFixture("squad_v2", SQUAD_FEATURES, {
        split: [_squad_row("56ddde6b9a695914005b9628", "In what country is Normandy located?", ["France"]),
                _squad_row("5ad39d53604f3c001a3fe8d1", "Who gave their name to Normandy in the 1000s?", [])]
        for split in ("train", "validation")}),
    "hellaswag": HubFixture("default", datasets.Features({
        "ind": Value("int32"), "activity_label": Value("string"), "ctx_a": Value("string"), "ctx_b": Value("string"),
        "ctx": Value("string"), "endings": Sequence(Value("string")), "source_id": Value("string"),
        "split": Value("string"), "split_type": Value("string"), "label": Value("string")}),
        {"train": [_HELLASWAG_ROW], "validation": [_HELLASWAG_ROW], "test": [{**_HELLASWAG_ROW, "label": ""}]}),
}

# Tasks the bundle holds in part, where a shipped config needs a split that only the Hub has: PAWS-X's English
# training set (configs/paper.yaml trains PAWS-X under the standard protocol). Schema: TFDS community catalog
# `huggingface:paws-x/en` (version 1.1.0): id int32, sentence1, sentence2, label ClassLabel("0", "1"); splits train,
# validation, test.
BUNDLE_GAP_FIXTURES = {
    "pawsx": HubFixture("en", datasets.Features({
        "id": Value("int32"), "sentence1": Value("string"), "sentence2": Value("string"),
        "label": ClassLabel(names=["0", "1"])}),
        {split: [{"id": 1, "sentence1": "In Paris, in October 1560, he secretly met the English ambassador.",
                  "sentence2": "In October 1560, he secretly met the English ambassador in Paris.", "label": 1}]
         for split in ("train", "validation", "test")}),
}
# TyDiQA-GoldP: the bundle has train files for en, ko and sw only; the Hub's `secondary_task` holds every language in
# one split, told apart by the id prefix (schema: components.tasks, tydiqa's hub_schema_source).
TYDIQA_CONTEXTS = {"arabic": "تقع نورماندي في شمال فرنسا.", "korean": "노르망디는 프랑스 북부에 있다.",
                   "finnish": "Normandia sijaitsee Pohjois-Ranskassa."}
BUNDLE_GAP_FIXTURES["tydiqa"] = HubFixture("secondary_task", SQUAD_FEATURES, {
    split: [{"id": f"{language}-2387335860751143628-{number}", "title": "Normandy", "context": context,
             "question": "?", "answers": {"text": [context[:4]], "answer_start": [0]}}
            for number, (language, context) in enumerate(TYDIQA_CONTEXTS.items())]
    for split in ("train", "validation")})
FIXTURES = {**HUB_FIXTURES, **BUNDLE_GAP_FIXTURES}


# Language-adapter text (configs/xtreme-r-adapters.yaml: `text_source: hf:wikimedia/wikipedia:20231101.{lang}:text`,
# streamed by components.corpus) in the languages the shrunk studies of tests/test_configs.py evaluate, and the
# source language of its Arabic intermediate arm (PAN-X). Schema:
# dataset card of wikimedia/wikipedia: id, url, title, text (strings); configs <dump date>.<lang>; one split, train.
WIKIPEDIA = ("wikimedia/wikipedia", "20231101.{lang}")
WIKIPEDIA_PARAGRAPHS = {
    "en": ["Normandy is a region in northern France.", "The Normans gave their name to it.",
           "Its capital is Rouen.", "It borders the English Channel."],
    "de": ["Die Normandie ist eine Region im Norden Frankreichs.", "Die Normannen gaben ihr den Namen.",
           "Ihre Hauptstadt ist Rouen.", "Sie grenzt an den Ärmelkanal."],
    "sw": ["Normandy ni eneo la kaskazini mwa Ufaransa.", "Wanormani waliipa jina lake.",
           "Mji mkuu wake ni Rouen.", "Inapakana na Mlango wa Kiingereza."],
    "ar": ["نورماندي منطقة في شمال فرنسا.", "أعطاها النورمان اسمهم.", "عاصمتها روان.", "تطل على بحر المانش."],
}
WIKIPEDIA_FEATURES = datasets.Features({"id": Value("string"), "url": Value("string"), "title": Value("string"),
                                        "text": Value("string")})
TEXT_FIXTURES = {
    (WIKIPEDIA[0], WIKIPEDIA[1].format(lang=lang)): HubFixture(WIKIPEDIA[1].format(lang=lang), WIKIPEDIA_FEATURES, {
        "train": [{"id": "1", "url": f"https://{lang}.wikipedia.org/wiki/Normandy", "title": "Normandy",
                   "text": "\n".join(paragraphs)}]})
    for lang, paragraphs in WIKIPEDIA_PARAGRAPHS.items()}


def write_hub_fixtures(cache_dir: Path, tasks=tuple(FIXTURES)) -> Path:
    """Writes the fixtures of `tasks`, and the language-adapter texts, as prepared datasets under `cache_dir` (a
    `HF_DATASETS_CACHE`); returns it."""
    for task in tasks:
        _write_prepared(cache_dir, get_task(task).hf_dataset[0], FIXTURES[task])
    for (dataset_id, _), fixture in TEXT_FIXTURES.items():
        _write_prepared(cache_dir, dataset_id, fixture)
    return cache_dir


def _write_prepared(cache_dir: Path, dataset_id: str, fixture: HubFixture) -> None:
    name = dataset_id.split("/")[-1]
    folder = cache_dir / dataset_id.replace("/", "___") / fixture.config / "0.0.0" / FIXTURE_HASH
    folder.mkdir(parents=True, exist_ok=True)
    splits = datasets.SplitDict(dataset_name=name)
    for split, rows in fixture.rows.items():
        with ArrowWriter(features=fixture.features, path=str(folder / f"{name}-{split}.arrow")) as writer:
            for row in rows:
                writer.write(fixture.features.encode_example(row))
            count, size = writer.finalize()
        splits.add(datasets.SplitInfo(name=split, num_examples=count, num_bytes=size, dataset_name=name))
    datasets.DatasetInfo(features=fixture.features, dataset_name=name, config_name=fixture.config,
                         splits=splits).write_to_directory(str(folder))


def hub_env(cache_dir: Path) -> dict[str, str]:
    """The environment under which `datasets` (imported afresh, e.g. in an `mlflow run` subprocess) reads the
    fixtures under `cache_dir` and never goes online."""
    return {"HF_DATASETS_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory) -> Path:
    return write_hub_fixtures(tmp_path_factory.mktemp("hf-datasets-cache"))


@pytest.fixture
def hub_datasets(hub_cache, monkeypatch) -> Path:
    """Every fixture (Hub-only tasks, and the Hub splits the bundle lacks), for this process (datasets read its cache
    path at import) and its children."""
    for key, value in hub_env(hub_cache).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub_cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return hub_cache


__all__ = ["HUB_FIXTURES", "BUNDLE_GAP_FIXTURES", "FIXTURES", "TEXT_FIXTURES", "write_hub_fixtures", "hub_env",
           "hub_cache", "hub_datasets"]

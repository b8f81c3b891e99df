"""Registry integrity: every spec names real code, and every registered task yields an example through the real
loaders, from the bundle where its files are there, else from a fixture in its source's exact schema (Hub datasets:
tests/hub_fixtures.py; Mewsli-X: its XTREME layout; CCG: a licensed-copy stand-in)."""

import re
from dataclasses import replace

import pytest
from transformers import AutoTokenizer

from components import retrieval
from components.data import UnlabeledSplitError, english_training_gap, load_split, training_stages
from components.errors import XstiltsInputError
from components.settings import DATA_ROOT_ENV, data_root
from components.task_types import check_registry, handler_for, registry_problems
from components.tasks import TASKS, TaskType, check_obtainable, get_task
from tests.hub_fixtures import HUB_FIXTURES, hub_cache, hub_datasets  # noqa: F401 (pytest fixtures)
from tests.test_dual_encoder import write_mewslix

# The canonical example fields of each task type (components/data.py's docstring).
EXAMPLE_FIELDS = {
    TaskType.PAIR_CLASSIFICATION: {"text_a", "text_b", "label", "lang"},
    TaskType.SINGLE_CLASSIFICATION: {"text_a", "label", "lang"},
    TaskType.MULTIPLE_CHOICE: {"context", "question", "choices", "label", "lang"},
    TaskType.TOKEN_CLASSIFICATION: {"tokens", "tags", "lang"},
    TaskType.EXTRACTIVE_QA: {"id", "context", "question", "answers", "lang"},
}
LOCAL_FIXTURE_TASKS = {"mewslix", "ccg"}  # not in the bundle and not on the Hub
CCG_SENTENCE = "Pierre\tN/N\nVinken\tN\n"


def _bundle_split(spec):
    """(split, lang) of a labeled split whose files are all in the bundle, or None."""
    for split, patterns in spec.files.items():
        if split in spec.withheld_label_splits or split == "candidates":
            continue
        for lang in spec.langs:
            if all((data_root() / pattern.format(lang=lang)).is_file() for pattern in patterns):
                return split, lang
    return None


def test_registry_resolves_to_code():
    check_registry()  # also run at import of components.task_types; here so a failure names this test


@pytest.mark.parametrize("change, problem", [
    ({"file_format": "tsv_pairr"}, "file_format 'tsv_pairr' has no reader"),
    ({"metrics": ("acuracy",)}, "metrics ('acuracy',): the scorer returns accuracy"),
    ({"train_sources": ("mnlii",)}, "train source 'mnlii' is not a registered task"),
    ({"label_aliases": {"contradictory": "contradict"}}, "label_aliases map to ['contradict']"),
])
def test_a_typo_in_a_spec_is_named(change, problem):
    bad = replace(get_task("xnli"), **change)
    assert any(problem in found for found in registry_problems(bad))
    with pytest.raises(ValueError, match=f"xnli: .*{re.escape(problem)}"):
        check_registry([bad])


@pytest.mark.parametrize("task, change, problem", [
    ("xquad", {"qa_scorer": "squadd"}, "no scorer (qa_scorer 'squadd'"),
    ("panx", {"tag_scheme": "iobb"}, "no scorer (qa_scorer 'squad', tag_scheme 'iobb')"),
    ("sst2", {"hf_dataset": ("nyu-mll/glue", "sst2"), "file_format": "aligned_text"}, "has no Hub converter"),
    ("tatoeba", {"name": "tatoebaa"}, "no evaluator in components.retrieval.RETRIEVAL_TASKS"),
])
def test_unknown_scorers_and_converters_are_named(task, change, problem):
    assert any(problem in found for found in registry_problems(replace(get_task(task), **change)))


def test_tasks_outside_the_bundle_each_have_a_fixture():
    outside = {name for name, spec in TASKS.items() if spec.task_type is not TaskType.RETRIEVAL
               and _bundle_split(spec) is None}
    assert outside == set(HUB_FIXTURES) | LOCAL_FIXTURE_TASKS
    assert all(get_task(name).hub_schema_source for name in HUB_FIXTURES)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_registered_task_loads_an_example(task, hub_datasets, tmp_path, monkeypatch):
    spec = get_task(task)
    if spec.task_type is TaskType.RETRIEVAL:  # read by components.retrieval, never by load_split
        if task == "tatoeba":
            sentences, english = retrieval.tatoeba_pairs("de")
            assert len(sentences) == len(english) > 0
        else:
            assert retrieval.read_bucc_split("zh", "dev").gold
        return
    if task == "mewslix":
        write_mewslix(tmp_path)
        monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
        split, lang = "test", "en"
    elif task == "ccg":
        (tmp_path / "english/ccg").mkdir(parents=True)
        (tmp_path / "english/ccg/train.tsv").write_text(CCG_SENTENCE, encoding="utf-8")
        monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
        split, lang = "train", "en"
    else:
        split, lang = _bundle_split(spec) or ("train", "en")  # Hub-only: the fixture's train split
    examples = load_split(spec, split, lang)
    assert examples
    fields = EXAMPLE_FIELDS.get(spec.task_type)
    assert fields is None or set(examples[0]) == fields  # dual-encoder examples vary by file (see test_dual_encoder)


def test_mnli_and_qqp_hub_labels_decode_to_the_registry_labels(hub_datasets):
    # MNLI's ClassLabel ids 1 and 2 are neutral and contradiction; QQP's 1 is duplicate, which the registry spells "1".
    assert [e["label"] for e in load_split(get_task("mnli"), "train", "en")] == ["neutral"]
    assert load_split(get_task("mnli"), "dev", "en")[0] == {
        "text_a": "Conceptually cream skimming has two basic dimensions.",
        "text_b": "Product and geography are what make cream skimming work.", "label": "contradiction", "lang": "en"}
    assert load_split(get_task("qqp"), "train", "en")[0]["label"] == "1"
    assert load_split(get_task("qqp"), "dev", "en")[0]["label"] == "0"


def test_hellaswag_hub_rows_become_multiple_choice_examples(hub_datasets):
    (example,) = load_split(get_task("hellaswag"), "dev", "en")
    assert example == {"context": "A man is sitting on a roof.", "question": "he",
                       "choices": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                                   "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
                       "label": 3, "lang": "en"}  # the Hub's label is the string "3"
    stages = training_stages(get_task("hellaswag"), "standard", "en")
    assert [len(stages[0].train), len(stages[0].select)] == [1, 1]
    assert english_training_gap(get_task("hellaswag"), "standard") == ""


def test_hellaswag_test_split_without_labels_is_refused(hub_datasets):
    spec = replace(get_task("hellaswag"), hf_splits={"test": "test"})
    with pytest.raises(UnlabeledSplitError, match="hf://Rowan/hellaswag//test: unlabeled split .*row 1 has an empty"):
        load_split(spec, "test", "en")


def test_squad_v2_keeps_unanswerable_questions_with_empty_answers(hub_datasets):
    answerable, unanswerable = load_split(get_task("squad_v2"), "train", "en")
    assert answerable["answers"] == {"text": ["France"], "answer_start": [53]}
    assert unanswerable["answers"] == {"text": [], "answer_start": []}


def test_ccg_is_refused_with_the_reason_unless_a_licensed_copy_is_there(tmp_path):
    with pytest.raises(XstiltsInputError, match="task 'ccg' cannot be obtained: CCGbank is LDC-licensed .*english/ccg/"
                                                "dev.tsv"):
        get_task("ccg").check_lang("en", training=True)  # what every phase calls before its run starts
    (tmp_path / "english/ccg").mkdir(parents=True)
    (tmp_path / "english/ccg/train.tsv").write_text(CCG_SENTENCE, encoding="utf-8")
    check_obtainable(get_task("ccg"), tmp_path)
    check_obtainable(get_task("xnli"))  # obtainable tasks pass whatever the data root holds


def test_hellaswag_examples_encode_one_input_per_ending(hub_datasets, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = load_split(get_task("hellaswag"), "train", "en")
    (feature,) = handler_for(get_task("hellaswag")).encode(examples, tokenizer, 64, ())
    assert len(feature["input_ids"]) == 4 and feature["labels"] == 3
    # Each input is the pair (ctx_a, ctx_b + ending).
    assert tokenizer.decode(feature["input_ids"][3], skip_special_tokens=True).endswith(
        "he starts pulling up roofing on a roof.")


def test_tydiqa_from_the_hub_keeps_the_rows_of_the_asked_language(hub_datasets):
    """The Hub's secondary_task mixes all languages in one split; Arabic and Finnish have no train file in the bundle."""
    arabic = load_split(get_task("tydiqa"), "train", "ar")
    assert [(example["id"], example["context"], example["lang"]) for example in arabic] == [
        ("arabic-2387335860751143628-0", "تقع نورماندي في شمال فرنسا.", "ar")]
    assert [example["id"] for example in load_split(get_task("tydiqa"), "dev", "fi")] == [
        "finnish-2387335860751143628-2"]

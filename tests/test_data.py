import csv
import json

import datasets
import pytest

from components.data import (EvaluationSplit, choose_evaluation_split, cut_dev_pool, evaluation_data, evaluation_set,
                             evaluation_split, load_split, resolve_protocol, stage_params, training_stages)
from components.errors import XstiltsInputError
from components.settings import data_root
from components.tasks import DevSplit, get_task
from components.training import TrainConfig

XNLI = get_task("xnli")
PAWSX = get_task("pawsx")
UDPOS = get_task("udpos")
XCOPA = get_task("xcopa")


def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_xnli_rows(tmp_path):
    write(tmp_path, "xtreme/download/xnli/dev-de.tsv", "a\tb\tentailment\nc\td\tcontradiction\n")
    assert load_split(XNLI, "dev", "de", tmp_path) == [
        {"text_a": "a", "text_b": "b", "label": "entailment", "lang": "de"},
        {"text_a": "c", "text_b": "d", "label": "contradiction", "lang": "de"},
    ]


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path, "xtreme/download/xnli/dev-de.tsv", "a\tb\tneutral\nc\td\tneutral\textra\n")
    with pytest.raises(XstiltsInputError, match=f"{path}:2: expected 3 tab-separated columns .* found 4"):
        load_split(XNLI, "dev", "de", tmp_path)


def test_label_outside_label_set(tmp_path):
    path = write(tmp_path, "xtreme/download/xnli/dev-de.tsv", "a\tb\tneutral\nc\td\tmaybe\n")
    with pytest.raises(XstiltsInputError, match=f"{path}:2: label 'maybe' is not in the label set of xnli"):
        load_split(XNLI, "dev", "de", tmp_path)


def test_unlabeled_split_is_refused(tmp_path):
    path = write(tmp_path, "xtreme/download/xnli/dev-de.tsv", "a\tb\nc\td\n")
    # Offline, the Hub (which may keep the labels the file lacks) cannot serve it either.
    with pytest.raises(XstiltsInputError, match=f"labels withheld in {path} \\(every row has 2 columns.*Hugging Face"):
        load_split(XNLI, "dev", "de", tmp_path)
    path = write(tmp_path, "xtreme/download/udpos/dev-de.tsv", "Haus\tNOUN\n\nBaum\n")
    with pytest.raises(XstiltsInputError, match=f"{path}:3: expected 2 tab-separated columns .*, found 1"):
        load_split(UDPOS, "dev", "de", tmp_path)


def test_withheld_test_labels_are_never_read_locally(tmp_path):
    write(tmp_path, "xtreme/download/xnli/test-de.tsv", "a\tb\tneutral\n")
    with pytest.raises(XstiltsInputError, match="withholds xnli test labels"):
        load_split(XNLI, "test", "de", tmp_path)


def test_missing_file_names_path_and_hub_failure(tmp_path):
    with pytest.raises(XstiltsInputError) as error:
        load_split(get_task("mnli"), "train", "en", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "xtreme/download/xnli/train-en.tsv") in message
    assert "nyu-mll/multi_nli" in message and "download_data.sh" in message


def test_unknown_protocol():
    with pytest.raises(XstiltsInputError, match="unknown protocol 'dev'"):
        resolve_protocol(XNLI, "dev")
    assert resolve_protocol(XNLI, "auto") == "dev-split"
    assert resolve_protocol(get_task("panx"), "auto") == "target-dev"
    assert resolve_protocol(get_task("udpos"), "auto") == "standard"


def test_target_dev_protocol_scores_target_language_dev_sets():
    panx = get_task("panx")
    [data] = training_stages(panx, "target-dev", "en")
    assert (len(data.train), len(data.select)) == (20000, 10000)  # PAN-X en train / dev sentences (bundle README)
    assert len(evaluation_data(panx, "target-dev", "yo")) == 100


def test_dev_split_cut_moves_to_premise_boundaries():
    pool = [{"text_a": premise} for premise in "AAABBBCCCDDD"]
    cut = cut_dev_pool(pool, DevSplit(train=4, select=2, group_by=("text_a",)))
    # train ends after B (index 6), select must hold at least one group: C (6-8), evaluation D (9-11)
    assert (cut.train, cut.select, cut.evaluated) == ((0, 1, 2, 3, 4, 5), (6, 7, 8), (9, 10, 11))


def test_dev_split_keeps_items_that_share_a_sentence_together():
    pool = [{"text_a": a, "text_b": b} for a, b in
            [("A", "B"), ("C", "D"), ("E", "F"), ("B", "G"), ("H", "C"), ("I", "J")]]
    cut = cut_dev_pool(pool, DevSplit(train=2, select=1, group_by=("text_a", "text_b")))
    # Groups by first item: {0, 3} share B, {1, 4} share C (in the other field), {2}, {5}.
    assert (cut.train, cut.select, cut.evaluated) == ((0, 3), (1, 4), (2, 5))
    assert {key: value for key, value in cut.describe().items() if key != "protocol_split_fingerprint"} == {
        "protocol_train_items": "0,3", "protocol_select_items": "1,4", "protocol_eval_items": "2,5",
        "protocol_split_sizes": "train 2, select 2, eval 2"}
    plain = cut_dev_pool(pool, DevSplit(train=2, select=1))
    assert (plain.train, plain.select, plain.evaluated) == ((0, 1), (2,), (3, 4, 5))
    assert plain.describe()["protocol_split_fingerprint"] != cut.describe()["protocol_split_fingerprint"]


def test_dev_split_refuses_a_pool_too_small_for_train_and_select():
    with pytest.raises(XstiltsInputError, match="the dev pool has 3 items, too few for 2 train \\+ 2 select items"):
        cut_dev_pool([{"text_a": text} for text in "ABC"], DevSplit(train=2, select=2))


def test_xnli_dev_split_on_the_bundle_keeps_premises_apart():
    lines = [line.split("\t") for line in _bundle_xnli_en().splitlines()]
    [data] = training_stages(XNLI, "dev-split", "en")
    evaluated = evaluation_data(XNLI, "dev-split", "sw")
    assert len(lines) == 2490
    assert (len(data.train), len(data.select), len(evaluated)) == (1800, 198, 492)
    train_premises = {row[0] for row in lines[:1800]}
    assert not train_premises & {row[0] for row in lines[1998:]}
    assert {example["lang"] for example in data.select} == {"en"}
    assert [example["label"] for example in evaluated] == [row[2] for row in lines[1998:]]


def _bundle_xnli_en():
    return (data_root() / "xtreme/download/xnli/dev-en.tsv").read_text(encoding="utf-8")


def test_dev_split_needs_aligned_languages(tmp_path):
    write(tmp_path, "xtreme/download/xnli/dev-en.tsv", "".join(f"s{i}\tt{i}\tneutral\n" for i in range(2100)))
    write(tmp_path, "xtreme/download/xnli/dev-de.tsv", "".join(f"s{i}\tt{i}\tneutral\n" for i in range(2099)))
    with pytest.raises(XstiltsInputError, match="dev \\[de\\] has 2099 items but dev \\[en\\] has 2100"):
        evaluation_data(XNLI, "dev-split", "de", tmp_path)


def test_a_task_without_dev_split_refuses_the_protocol():
    with pytest.raises(XstiltsInputError, match="udpos' has no dev-split protocol"):
        training_stages(UDPOS, "dev-split", "en")


def _bundle_rows(task, lang):
    with (data_root() / f"xtreme/download/{task}/dev-{lang}.tsv").open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def _indices(ranges):
    """`0-3,5` -> [0, 1, 2, 3, 5] (the logged item ranges)."""
    return [index for part in ranges.split(",")
            for index in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)]


def test_pawsx_dev_split_on_the_bundle_shares_no_sentence_across_parts():
    rows = _bundle_rows("pawsx", "en")
    sentences = lambda part: {sentence for row in part for sentence in row[:2]}  # noqa: E731
    assert sentences(rows[1700:]) & sentences(rows[:1500])  # why a plain cut of the file would leak
    assert resolve_protocol(PAWSX, "auto") == "dev-split"
    [data] = training_stages(PAWSX, "dev-split", "en")
    train, select, evaluated = (_indices(data.params[f"protocol_{part}_items"]) for part in ("train", "select", "eval"))
    assert (len(train), len(select), len(evaluated)) == (1500, 200, 300)
    assert sorted(train + select + evaluated) == list(range(2000))
    train_rows, select_rows, eval_rows = ([rows[index] for index in part] for part in (train, select, evaluated))
    assert not sentences(eval_rows) & (sentences(train_rows) | sentences(select_rows))
    assert not sentences(select_rows) & sentences(train_rows)
    assert [(e["text_a"], e["text_b"], e["label"]) for e in data.train] == [tuple(row) for row in train_rows]
    assert data.params["protocol_split_sizes"] == "train 1500, select 200, eval 300"
    # The same item indices in every language: the dev files are line-aligned translations.
    ja_rows = _bundle_rows("pawsx", "ja")
    assert [(e["text_a"], e["label"]) for e in evaluation_data(PAWSX, "auto", "ja")] == [
        (ja_rows[index][0], ja_rows[index][2]) for index in evaluated]


# The bundle README's UD-POS row: labeled test files for these 21 languages; dev only for the others it lists.
UDPOS_TEST_LANGS = "af bg el et eu fa he hu kk lt mr nl ro ta te tl uk ur vi wo yo".split()
UDPOS_DEV_ONLY_LANGS = "ar de en es fi fr hi id it ja ko pl pt ru tr zh".split()


def test_udpos_evaluates_test_where_the_bundle_has_it_and_dev_elsewhere():
    assert {lang: evaluation_split(UDPOS, "standard", lang) for lang in UDPOS_TEST_LANGS + UDPOS_DEV_ONLY_LANGS} == {
        **dict.fromkeys(UDPOS_TEST_LANGS, "test"), **dict.fromkeys(UDPOS_DEV_ONLY_LANGS, "dev")}
    assert evaluation_split(UDPOS, "auto", "et") == "test"
    assert evaluation_split(UDPOS, "target-dev", "et") == "dev"
    wo_test = (data_root() / "xtreme/download/udpos/test-wo.tsv").read_text(encoding="utf-8")
    ja_dev = (data_root() / "xtreme/download/udpos/dev-ja.tsv").read_text(encoding="utf-8")
    assert len(evaluation_data(UDPOS, "standard", "wo")) == wo_test.strip().count("\n\n") + 1 == 470
    assert len(evaluation_data(UDPOS, "standard", "ja")) == ja_dev.strip().count("\n\n") + 1


def test_dev_protocols_evaluate_dev_items():
    assert evaluation_split(XNLI, "dev-split", "sw") == evaluation_split(PAWSX, "auto", "ko") == "dev"
    assert evaluation_split(get_task("panx"), "auto", "yo") == "dev"
    assert evaluation_split(get_task("xquad"), "standard", "ro") == "test"


def test_a_language_without_labeled_test_or_dev_data_names_both_files(tmp_path):
    with pytest.raises(XstiltsInputError) as error:
        evaluation_split(UDPOS, "standard", "de", tmp_path)
    message = str(error.value)
    assert message.startswith("cannot evaluate udpos [de]: no labeled test or dev data")
    for split in ("test", "dev"):
        assert str(tmp_path / f"xtreme/download/udpos/{split}-de.tsv") in message
    with pytest.raises(XstiltsInputError, match=r"cannot evaluate udpos \[th\]: .*udpos/test-th.tsv.*udpos/dev-th.tsv"):
        evaluation_data(UDPOS, "standard", "th")
    with pytest.raises(XstiltsInputError, match="unknown language 'xx' for task 'udpos'"):
        evaluation_split(UDPOS, "standard", "xx")


def test_the_evaluation_split_says_why(tmp_path):
    assert choose_evaluation_split(UDPOS, "standard", "wo") == EvaluationSplit("test", "labeled local test file")
    ja = choose_evaluation_split(UDPOS, "standard", "ja")
    assert ja.split == "dev"
    assert ja.reason.startswith(f"test: missing data file(s): {data_root() / 'xtreme/download/udpos/test-ja.tsv'}")
    assert choose_evaluation_split(XNLI, "standard", "de") == EvaluationSplit(
        "dev", "test: the XTREME layout withholds xnli test labels, so local files are never scored")
    assert choose_evaluation_split(XNLI, "auto", "de") == EvaluationSplit(
        "dev", "protocol dev-split scores the evaluation part of the dev pool")


# A test file as XTREME's udpos_preprocess writes it: one word per line, a blank line between sentences, no tags.
WORDS_ONLY = "Das\nHaus\n\nEin\nBaum\n"
TAGGED = "Das\tDET\nHaus\tNOUN\n\nEin\tDET\nBaum\tNOUN\n"


def test_a_test_file_without_tags_is_scored_on_labeled_dev_instead(tmp_path):
    test = write(tmp_path, "xtreme/download/udpos/test-de.tsv", WORDS_ONLY)
    write(tmp_path, "xtreme/download/udpos/dev-de.tsv", "Ein\tDET\nHund\tNOUN\n")
    assert choose_evaluation_split(UDPOS, "standard", "de", tmp_path) == EvaluationSplit(
        "dev", f"test: labels withheld in {test} (every line holds a word and no tag)")
    evaluated = evaluation_set(UDPOS, "standard", "de", tmp_path)
    assert evaluated.examples == [{"tokens": ["Ein", "Hund"], "tags": ["DET", "NOUN"], "lang": "de"}]
    assert (evaluated.indices, evaluated.split_size) == ((0,), 1)
    write(tmp_path, "xtreme/download/udpos/test-de.tsv", TAGGED)
    assert evaluation_split(UDPOS, "standard", "de", tmp_path) == "test"
    assert len(evaluation_data(UDPOS, "standard", "de", tmp_path)) == 2


def test_a_test_file_without_tags_and_no_dev_file_names_both(tmp_path):
    test = write(tmp_path, "xtreme/download/udpos/test-de.tsv", WORDS_ONLY)
    with pytest.raises(XstiltsInputError, match=f"cannot evaluate udpos \\[de\\]: no labeled test or dev data. test: "
                                                f"labels withheld in {test} .*dev: missing data file"):
        evaluation_split(UDPOS, "standard", "de", tmp_path)


COPA_ROW = {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause", "idx": 1}


def test_a_label_less_multiple_choice_test_file_is_scored_on_dev_instead(tmp_path):
    # SuperGLUE's COPA test file has rows without a `label` field.
    test = write(tmp_path, "xtreme/download/xcopa/test-et.jsonl", json.dumps(COPA_ROW) + "\n")
    write(tmp_path, "xtreme/download/xcopa/val-et.jsonl", json.dumps({**COPA_ROW, "label": 0}) + "\n")
    assert choose_evaluation_split(XCOPA, "standard", "et", tmp_path) == EvaluationSplit(
        "dev", f"test: labels withheld in {test} (no record has a `label` field)")
    assert [example["label"] for example in evaluation_data(XCOPA, "standard", "et", tmp_path)] == [0]


def squad_file(*answers: str) -> str:
    """One paragraph "The cat sat." with one question per answer text ("" = blanked, as XTREME blanks test answers)."""
    return json.dumps({"version": "1.1", "data": [{"paragraphs": [{"context": "The cat sat.", "qas": [
        {"id": f"q{number}", "question": "Who?", "answers": [{"text": text, "answer_start": 4 if text else 0}]}
        for number, text in enumerate(answers, start=1)]}]}]})


def test_blanked_qa_answers_send_evaluation_to_the_hub_which_offline_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "xtreme/download/xquad/xquad.de.json", squad_file("", ""))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty-hf-datasets-cache")
    with monkeypatch.context() as online:
        online.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        choice = choose_evaluation_split(XQUAD, "standard", "de", tmp_path)
    assert choice == EvaluationSplit("test", f"Hugging Face Hub google/xquad (local test: labels withheld in {path} "
                                             "(no question has an answer text); local dev: the XTREME layout has no "
                                             "dev split for xquad)")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(XstiltsInputError, match=f"cannot evaluate xquad \\[de\\]: no labeled test or dev data. test: "
                                                f"labels withheld in {path} .*; the Hugging Face Hub is offline .* has "
                                                "no google/xquad xquad.de validation split"):
        evaluation_data(XQUAD, "standard", "de", tmp_path)
    write(tmp_path, "xtreme/download/xquad/xquad.de.json", squad_file("cat", ""))
    with pytest.raises(XstiltsInputError, match=f"{path}: question q2 has no answer text \\(1 of 2 questions"):
        evaluation_split(XQUAD, "standard", "de", tmp_path)


def test_anli_reader_maps_short_labels_and_checks_columns(tmp_path):
    header = "context,statement,gold_label,uid\n"
    write(tmp_path, "english/anli/ANLI_analysis_r1_dev.csv", header + 'p,"h, with comma",e,1\n')
    write(tmp_path, "english/anli/ANLI_analysis_r2_dev.csv", header + "p2,h2,c,2\n")
    path = write(tmp_path, "english/anli/ANLI_analysis_r3_dev.csv", header + "p3,h3,n,3,extra\n")
    with pytest.raises(XstiltsInputError, match=f"{path}:2: expected 4 columns"):
        load_split(get_task("anli"), "dev", "en", tmp_path)
    write(tmp_path, "english/anli/ANLI_analysis_r3_dev.csv", header + "p3,h3,n,3\n")
    assert [(e["text_b"], e["label"]) for e in load_split(get_task("anli"), "dev", "en", tmp_path)] == [
        ("h, with comma", "entailment"), ("h2", "contradiction"), ("h3", "neutral")]


def test_conll_reader_and_tag_check(tmp_path):
    write(tmp_path, "xtreme/download/panx/dev-sw.tsv", "Juma\tB-PER\nalikuja\tO\n\nDar\tB-LOC\n")
    assert load_split(get_task("panx"), "dev", "sw", tmp_path) == [
        {"tokens": ["Juma", "alikuja"], "tags": ["B-PER", "O"], "lang": "sw"},
        {"tokens": ["Dar"], "tags": ["B-LOC"], "lang": "sw"},
    ]
    path = write(tmp_path, "xtreme/download/panx/dev-yo.tsv", "Ade\tB-PERSON\n")
    with pytest.raises(XstiltsInputError, match=f"{path}:1: label 'B-PERSON'"):
        load_split(get_task("panx"), "dev", "yo", tmp_path)


class FakeHub:
    """Stands in for `datasets.load_dataset`, recording what was asked for."""

    def __init__(self, rows):
        self.rows, self.calls = rows, []

    def __call__(self, dataset_id, config, split):
        self.calls.append((dataset_id, config, split))
        return self.rows


def test_hub_fallback_when_a_file_is_absent(tmp_path, monkeypatch):
    import datasets
    hub = FakeHub([{"premise": "p", "hypothesis": "h", "label": 2}])
    monkeypatch.setattr(datasets, "load_dataset", hub)
    assert load_split(XNLI, "test", "sw", tmp_path) == [
        {"text_a": "p", "text_b": "h", "label": "contradiction", "lang": "sw"}]
    assert hub.calls == [("facebook/xnli", "sw", "test")]


def test_hub_rows_with_withheld_labels_are_refused(tmp_path, monkeypatch):
    import datasets
    monkeypatch.setattr(datasets, "load_dataset", FakeHub([{"sentence": "fine", "label": -1}]))
    with pytest.raises(XstiltsInputError, match="^hf://nyu-mll/glue/sst2/validation: unlabeled split \\(row 1 has label -1\\)"):
        load_split(get_task("sst2"), "dev", "en", tmp_path)


def test_hub_wikiann_tags_follow_the_registry_order(tmp_path, monkeypatch):
    import datasets
    monkeypatch.setattr(datasets, "load_dataset", FakeHub([{"tokens": ["Ada", "Lovelace"], "ner_tags": [1, 2]}]))
    assert load_split(get_task("panx"), "dev", "qu", tmp_path)[0]["tags"] == ["B-PER", "I-PER"]


def test_xcopa_trains_on_socialiqa_then_copa_as_xtreme_r_does():
    siqa, copa = training_stages(get_task("xcopa"), "standard", "en")
    # SocialIQA has no train file in the bundle: its own dev-split (1,954 dev items: 1,700 train / 254 select).
    assert (siqa.task, len(siqa.train), len(siqa.select), siqa.params["data_protocol"]) == ("siqa", 1700, 254,
                                                                                              "dev-split")
    # Then COPA train (400) with selection on XCOPA's English dev (COPA val, 100).
    assert (copa.task, len(copa.train), len(copa.select), copa.params["train_source"]) == ("xcopa", 400, 100, "copa")
    params = stage_params([siqa, copa], TrainConfig())
    assert params["stage1_task"] == "siqa" and params["stage2_n_train_examples"] == 400
    assert params["stage1_protocol_select_items"] == "1700-1953"


def test_logged_sizes_are_those_used_after_the_caps_with_the_available_ones_beside():
    stages = training_stages(get_task("xcopa"), "standard", "en")
    params = stage_params(stages, TrainConfig(max_train_examples=640, max_select_examples=200))
    keys = ("n_train_examples", "n_train_available", "n_select_examples", "n_select_available")
    # SocialIQA's dev-split: 1,700 train and 254 select items, capped at 640 and 200; COPA: 400 and 100, under the caps.
    assert {stage: tuple(params[f"stage{stage}_{key}"] for key in keys) for stage in (1, 2)} == \
        {1: (640, 1700, 200, 254), 2: (400, 400, 100, 100)}


XQUAD = get_task("xquad")


def test_train_source_and_select_holdout_give_one_english_stage_with_logged_ranges():
    (stage,) = training_stages(XQUAD, "standard", "en", train_source="tydiqa", select_holdout=300)
    # TyDiQA-GoldP English train has 3,696 questions: 0-3395 train, the last 300 select.
    assert (stage.task, len(stage.train), len(stage.select)) == ("xquad", 3396, 300)
    assert stage.params == {"data_protocol": "standard", "train_source": "tydiqa", "select_source": "tydiqa train",
                            "protocol_train_items": "0-3395", "protocol_select_items": "3396-3695"}
    assert {example["lang"] for example in stage.train + stage.select} == {"en"}
    assert stage.select[0]["question"] != stage.train[-1]["question"]


def test_mlqa_on_a_train_source_selects_on_its_english_dev():
    (stage,) = training_stages(get_task("mlqa"), "target-dev", "en", train_source="tydiqa")
    assert (len(stage.train), len(stage.select), stage.params["select_source"]) == (3696, 1148, "dev")


@pytest.mark.parametrize("task, protocol, options, message", [
    ("xquad", "standard", {"train_source": "xnli"}, "train_source_override xnli is a pair_classification task; xquad"),
    ("xquad", "standard", {"train_source": "tydiqa", "select_holdout": 3696}, r"expected 1 to 3695"),
    ("xquad", "standard", {"train_source": "tydiqa", "select_holdout": -1}, r"select_holdout -1"),
    ("xnli", "dev-split", {"select_holdout": 10}, "apply to the standard and target-dev protocols"),
    ("xquad", "standard", {"train_source": "nosuchtask"}, "unknown task 'nosuchtask'"),
])
def test_impossible_data_options(task, protocol, options, message):
    with pytest.raises(XstiltsInputError, match=message):
        training_stages(get_task(task), protocol, "en", **options)


def test_missing_english_dev_points_at_select_holdout(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(XstiltsInputError, match="cannot load xquad dev .* pass select_holdout=N"):
        training_stages(XQUAD, "standard", "en", train_source="tydiqa")


def test_qa_answer_away_from_its_offset_is_refused(tmp_path):
    data = {"data": [{"paragraphs": [{"context": "The cat sat.", "qas": [
        {"id": "q7", "question": "Who?", "answers": [{"text": "cat", "answer_start": 5}]}]}]}]}
    path = write(tmp_path, "xtreme/download/xquad/xquad.de.json", json.dumps(data))
    with pytest.raises(XstiltsInputError, match=f"{path}: question q7: answer 'cat' does not match its context at "
                                                f"answer_start 5 \\(found 'at '\\)"):
        load_split(XQUAD, "test", "de", tmp_path)


def test_multiple_choice_row_with_the_wrong_number_of_choices(tmp_path):
    folder = tmp_path / "english/commonsenseqa"
    folder.mkdir(parents=True)
    row = {"id": "q1", "question": "Where do fish live?", "answerKey": "A",
           "choices": {"label": list("ABCD"), "text": ["sea", "sky", "desk", "car"]}}
    (folder / "dev_rand_split.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(XstiltsInputError, match=r"dev_rand_split.jsonl:1: expected 5 choices, found 4"):
        load_split(get_task("commonsenseqa"), "dev", "en", tmp_path)

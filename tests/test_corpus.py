"""Language-adapter text from the bundle: sources per language, deduplication, evaluation texts left out."""

import pytest

from components.corpus import (TaskExclusion, build_corpus, check_exclusion_covers, check_exclusion_recorded,
                               evaluation_protocols, example_texts, studied_tasks)
from components.data import evaluation_data, load_split
from components.errors import XstiltsInputError
from components.tasks import get_task


def texts_of(task: str, split: str, lang: str) -> set[str]:
    return {text for example in load_split(get_task(task), split, lang) for text in example_texts(example)}


def test_swahili_text_comes_from_every_task_file_in_swahili_without_evaluation_texts():
    corpus = build_corpus("sw", "bundle", studied_tasks("all"))
    kept = {source.source: source.kept for source in corpus.sources}
    assert set(kept) == {"panx train", "panx dev", "tydiqa train", "xcopa dev", "xcopa test", "xnli dev",
                         "tatoeba test"}
    texts = set(corpus.texts)
    assert not texts & texts_of("panx", "dev", "sw")  # PAN-X scores sw on dev (target-dev)
    assert not texts & texts_of("xcopa", "test", "sw")
    evaluated_xnli = {text for example in evaluation_data(get_task("xnli"), "auto", "sw") for text in
                      example_texts(example)}
    assert not texts & evaluated_xnli
    # A training text is kept unless an evaluation scores it too.
    assert texts_of("panx", "train", "sw") - texts_of("panx", "dev", "sw") <= texts
    assert kept["xnli dev"] > 0 and kept["tatoeba test"] == 0  # Tatoeba has only evaluation text
    assert len(texts) == len(corpus.texts)  # deduplicated


def test_composition_accounts_for_every_text_read():
    corpus = build_corpus("yo", "bundle", studied_tasks("all"))
    composition = corpus.composition()
    for source in composition["sources"]:
        assert source["read"] == source["duplicates"] + source["excluded_eval"] + source["kept"]
    assert composition["training_texts"] == sum(source["kept"] for source in composition["sources"])
    assert composition["eval_texts_of"]["panx"] > 0 and composition["eval_texts_of"]["udpos"] > 0
    assert corpus.params()["corpus_sources"] == "panx train=86"


def test_only_the_studied_tasks_lose_their_evaluation_texts():
    panx_only = build_corpus("yo", "bundle", studied_tasks("panx"))
    assert {source.source: source.kept for source in panx_only.sources}["udpos test"] > 0
    everything = build_corpus("yo", "bundle", studied_tasks("none"))
    assert len(everything.texts) > len(panx_only.texts) > len(build_corpus("yo", "bundle", studied_tasks("all")).texts)


def test_capping_samples_every_source_reproducibly():
    corpus = build_corpus("sw", "bundle", studied_tasks("all"))
    capped = corpus.capped(500, seed=3)
    assert len(capped.texts) == 500 and capped.texts == corpus.capped(500, seed=3).texts
    assert set(capped.texts) <= set(corpus.texts) and capped.available == len(corpus.texts)
    assert set(capped.texts) & texts_of("tydiqa", "train", "sw") and set(capped.texts) & texts_of("panx", "train", "sw")


def test_english_template_questions_are_not_text_of_the_language():
    copa = {"context": "Le chat dort.", "question": "What was the cause?", "choices": ["Il pleut.", "Il fait nuit."]}
    assert example_texts(copa) == ["Le chat dort.", "Il pleut.", "Il fait nuit."]
    assert example_texts({"tokens": ["Nairobi", "ni", "mji"], "tags": ["B-LOC", "O", "O"]}) == ["Nairobi ni mji"]


@pytest.mark.parametrize("lang, message", [
    ("my", r"empty text corpus for language 'my': found panx dev 100 texts, all of them duplicates or evaluation "
           r"texts of studied tasks \(panx\)"),
    ("xh", r"empty text corpus for language 'xh': the bundle at .* holds no task file in language 'xh'"),
    ("Swahili", r"language code 'Swahili': expected an ISO 639-1/3 code"),
])
def test_no_text_is_one_clear_error(lang, message):
    with pytest.raises(XstiltsInputError, match=message):
        build_corpus(lang, "bundle", studied_tasks("all"))


def test_bad_options_are_refused():
    with pytest.raises(XstiltsInputError, match="unknown task"):
        studied_tasks("panx,nosuchtask")
    with pytest.raises(XstiltsInputError, match="text_source 'wikipedia'"):
        build_corpus("sw", "wikipedia", ())
    with pytest.raises(XstiltsInputError, match="pass max_texts"):
        build_corpus("sw", "hf:wikimedia/wikipedia:20231101.{lang}", ())


def test_an_online_corpus_is_filtered_like_the_bundle(monkeypatch):
    datasets = pytest.importorskip("datasets")
    evaluated = next(iter(texts_of("panx", "dev", "sw")))
    rows = [{"text": f"Kwanza.\n{evaluated}\n\nPili."}, {"text": "Tatu."}, {"text": "Nne."}]
    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return iter(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = build_corpus("sw", "hf:wikimedia/wikipedia:20231101.{lang}", studied_tasks("all"), max_hub_texts=4)
    assert calls == [("wikimedia/wikipedia", "20231101.sw", "train", True)]
    assert corpus.texts == ["Kwanza.", "Pili.", "Tatu."]
    assert corpus.sources[0].excluded_eval == 1


def sw_adapter_params(studied: str, *protocols: str) -> dict:
    """The params a lang_adapter run logs for a Swahili bundle corpus."""
    return {"lang": "sw", **build_corpus("sw", "bundle", studied_tasks(studied), protocols).params()}


XNLI, XCOPA = get_task("xnli"), get_task("xcopa")


def test_an_exclusion_covers_an_evaluation_whose_items_it_left_out():
    dev_split_only = sw_adapter_params("xnli", "dev-split")
    # Dev-split scores a part of the dev pool; target-dev all 2,490 dev items, most of which this corpus kept.
    check_exclusion_covers("run1", dev_split_only, XNLI, "dev-split", "sw")
    with pytest.raises(XstiltsInputError, match=r"lang_adapter run run1 may have trained on text this evaluation "
                                                r"scores: xnli \[sw\] scores target-dev: dev 0-2489, and the adapter's "
                                                r"corpus left out of xnli: dev-split: dev \d+-2489; not left out: dev "
                                                r"0-\d+\. Retrain the sw adapter .* -P protocol=target-dev"):
        check_exclusion_covers("run1", dev_split_only, XNLI, "target-dev", "sw")
    # The first 100 dev items train and select under dev-split: a capped target-dev evaluation is not covered either.
    with pytest.raises(XstiltsInputError, match=r"scores target-dev: dev 0-99, .* not left out: dev 0-99\."):
        check_exclusion_covers("run1", dev_split_only, XNLI, "target-dev", "sw", max_examples=100)
    both = sw_adapter_params("xnli", "dev-split", "target-dev")
    for protocol in ("dev-split", "target-dev", "auto"):
        check_exclusion_covers("run2", both, XNLI, protocol, "sw")


def test_an_exclusion_of_another_split_does_not_cover():
    # XCOPA scores sw on its 500 test items under standard and on its 100 dev items under target-dev.
    target_dev = sw_adapter_params("xcopa", "target-dev")
    check_exclusion_covers("run1", target_dev, XCOPA, "target-dev", "sw")
    with pytest.raises(XstiltsInputError, match=r"xcopa \[sw\] scores standard: test 0-499, and the adapter's corpus "
                                                r"left out of xcopa: target-dev: dev 0-99; not left out: test 0-499"):
        check_exclusion_covers("run1", target_dev, XCOPA, "standard", "sw")


def test_an_adapter_without_a_record_for_the_task_is_refused():
    with pytest.raises(XstiltsInputError, match=r"xnli \[sw\] scores dev-split: .* left out of xnli: nothing "
                                                r"recorded \(corpus_excluded_eval_of: panx; runs from before"):
        check_exclusion_covers("run1", sw_adapter_params("panx"), XNLI, "auto", "sw")
    # A run from before the record: its task list alone.
    with pytest.raises(XstiltsInputError, match=r"left out of xnli: nothing recorded \(corpus_excluded_eval_of: "
                                                r"xnli; runs from before corpus_excluded_items/<task> was logged"):
        check_exclusion_covers("old", {"lang": "sw", "corpus_excluded_eval_of": "xnli"}, XNLI, "auto", "sw")
    with pytest.raises(XstiltsInputError, match="lang_adapter run old recorded no exclusion of xnli's evaluation "
                                                "texts"):
        check_exclusion_recorded("old", {"lang": "sw", "corpus_excluded_eval_of": "xnli"}, "xnli")


def test_the_record_names_each_protocol_resolved_per_task_and_reads_back():
    params = sw_adapter_params("xnli,panx,xcopa,tatoeba", "auto")
    # auto: dev-split for XNLI, target-dev for PAN-X (1,000 sw dev sentences), standard for XCOPA (500 test items).
    assert params["corpus_excluded_items/xnli"].startswith("dev-split: dev ")
    assert params["corpus_excluded_items/panx"] == "target-dev: dev 0-999"
    assert params["corpus_excluded_items/xcopa"] == "standard: test 0-499"
    assert params["corpus_excluded_items/tatoeba"] == "every text"
    logged = {"corpus_excluded_items/xnli": "dev-split: dev 0-3,5,9-12; standard: none"}
    exclusion = TaskExclusion.from_params("xnli", logged)
    assert [(entry.protocol, entry.split, entry.items) for entry in exclusion.per_protocol] == [
        ("dev-split", "dev", (0, 1, 2, 3, 5, 9, 10, 11, 12)), ("standard", "", ())]
    assert exclusion.describe() == logged["corpus_excluded_items/xnli"]


def test_protocol_lists_are_checked():
    assert evaluation_protocols("auto, standard,auto") == ("auto", "standard")
    with pytest.raises(XstiltsInputError, match="protocol 'sometimes': expected auto or protocols separated by "
                                                "commas"):
        evaluation_protocols("sometimes")

"""Language-adapter text from the bundle: sources per language, deduplication, evaluation texts left out."""

import pytest

from components.corpus import build_corpus, example_texts, studied_tasks
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
    with pytest.raises(XstiltsInputError, match="--text-source 'wikipedia'"):
        build_corpus("sw", "wikipedia", ())
    with pytest.raises(XstiltsInputError, match="pass --max-texts"):
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

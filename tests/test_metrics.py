"""Benchmark metrics against values worked out by hand, with the arithmetic in each test."""

import os
import random
from pathlib import Path

import numpy as np
import pytest

from components import metrics
from components.tasks import PANX_LABELS, TASKS, TaskType

XTREME_MOCK_DATA = "XTREME_MOCK_TEST_DATA"


def test_accuracy_is_on_a_0_100_scale():
    assert metrics.accuracy(["a", "b", "c", "d"], ["a", "b", "c", "x"]) == {"accuracy": 75.0}


def test_upos_chunks_are_runs_of_one_tag_and_single_words_for_s_tags():
    # seqeval 0.0.12 on tags without '-': letter = first character, type = the whole tag. Runs of one tag merge
    # (NOUN NOUN, INTJ INTJ: letter I continues a chunk); letter S (SCONJ, SYM) ends and starts a chunk at every word;
    # ADJ ADP share the letter A but not the type: two chunks. Sentences never share a chunk.
    sentences = [["NOUN", "NOUN", "SCONJ", "SCONJ", "INTJ", "INTJ", "ADJ", "ADP"], ["ADP", "SYM", "SYM"]]
    # Positions count the 'O' that closes each sentence: the second sentence starts at 9.
    assert metrics.seqeval_0012_chunks(sentences) == [
        ("NOUN", 0, 1), ("SCONJ", 2, 2), ("SCONJ", 3, 3), ("INTJ", 4, 5), ("ADJ", 6, 6), ("ADP", 7, 7),
        ("ADP", 9, 9), ("SYM", 10, 10), ("SYM", 11, 11)]


def test_upos_f1_where_seqeval_versions_agree():
    # Gold chunks: NOUN[0-1] VERB[2] SCONJ[3] SCONJ[4] ADJ[5] PUNCT[6]  -> 6
    # Pred chunks: NOUN[0] VERB[1-2] SCONJ[3] SCONJ[4] ADJ[5] PUNCT[6]  -> 6
    # Matching: SCONJ[3] SCONJ[4] ADJ[5] PUNCT[6] = 4 -> P = R = F1 = 4/6 = 66.67; token accuracy 6/7 = 85.71.
    # seqeval 1.x reads the same chunks under types OUN, ERB, CONJ, DJ, UNCT: the same score.
    gold = [["NOUN", "NOUN", "VERB", "SCONJ", "SCONJ", "ADJ", "PUNCT"]]
    pred = [["NOUN", "VERB", "VERB", "SCONJ", "SCONJ", "ADJ", "PUNCT"]]
    for scheme in ("plain", "iob"):
        scores = metrics.tagging_f1(gold, pred, scheme)
        assert scores["f1"] == scores["precision"] == scores["recall"] == pytest.approx(400 / 6)
        assert scores["token_accuracy"] == pytest.approx(600 / 7)


def test_upos_f1_counts_a_cconj_sconj_confusion_as_an_error():
    # Gold PRON[0] CCONJ[1] VERB[2], pred PRON[0] SCONJ[1] VERB[2]: 2 of 3 chunks match, P = R = F1 = 66.67.
    # seqeval 1.x drops the first letter as an IOB prefix: both are type CONJ, and the confusion scores 100.
    gold, pred = [["PRON", "CCONJ", "VERB"]], [["PRON", "SCONJ", "VERB"]]
    assert metrics.tagging_f1(gold, pred, "plain")["f1"] == pytest.approx(200 / 3)
    assert metrics.tagging_f1(gold, pred, "iob")["f1"] == 100.0


def test_upos_f1_keeps_a_cconj_directly_before_an_sconj():
    # Gold NOUN[0] CCONJ[1] SCONJ[2] VERB[3] (4 chunks), pred NOUN[0] CCONJ[1] ADV[2] VERB[3] (4): 3 match,
    # P = R = F1 = 3/4 = 75.
    # seqeval 1.x: CCONJ is letter C, type CONJ; SCONJ (letter S, same type) starts a chunk without ending one, so
    # gold keeps 3 chunks, OUN[0] CONJ[2] ERB[3]; pred has OUN[0] CONJ[1] DV[2] ERB[3]: 2 match,
    # P = 2/4, R = 2/3, F1 = (2/3)/(7/6) = 4/7 = 57.14.
    gold, pred = [["NOUN", "CCONJ", "SCONJ", "VERB"]], [["NOUN", "CCONJ", "ADV", "VERB"]]
    assert metrics.seqeval_0012_chunks(gold) == [("NOUN", 0, 0), ("CCONJ", 1, 1), ("SCONJ", 2, 2), ("VERB", 3, 3)]
    assert metrics.tagging_f1(gold, pred, "plain") == {
        "f1": pytest.approx(75.0), "precision": pytest.approx(75.0), "recall": pytest.approx(75.0),
        "token_accuracy": pytest.approx(75.0)}
    assert metrics.tagging_f1(gold, pred, "iob")["f1"] == pytest.approx(400 / 7)


def test_iob_f1_scores_entity_chunks():
    # Gold PER[0-1] LOC[3] | ORG[0]; pred PER[0-1] ORG[3] | ORG[0]: 2 of 3 match each way -> 66.67.
    # An I- after a chunk of another type starts a chunk: pred ORG[0] LOC[1] in the second sentence adds LOC[1],
    # not gold -> P 3/4, R 3/3, F1 = (3/2)/(7/4) = 6/7 = 85.71.
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    assert metrics.tagging_f1(gold, [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]], "iob")["f1"] == \
        pytest.approx(200 / 3)
    assert metrics.tagging_f1(gold, [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-LOC"]], "iob")["f1"] == \
        pytest.approx(600 / 7)


@pytest.mark.filterwarnings("ignore:.*is ill-defined")  # sentences without an entity: 0, as in every version
def test_iob_tags_are_read_alike_by_seqeval_1_2_2_and_the_0_0_12_reading():
    # PAN-X keeps seqeval 1.2.2: on B-/I-/O tags, well-formed or not, it finds the chunks 0.0.12 finds.
    rng = random.Random(0)
    for _ in range(500):
        gold = [[rng.choice(PANX_LABELS) for _ in range(rng.randint(1, 6))] for _ in range(rng.randint(1, 3))]
        pred = [[rng.choice(PANX_LABELS) for _ in sentence] for sentence in gold]
        assert metrics.tagging_f1(gold, pred, "iob") == pytest.approx(metrics.tagging_f1(gold, pred, "plain"))


def test_every_tagging_task_names_its_tag_scheme():
    assert {name: spec.tag_scheme for name, spec in TASKS.items() if spec.task_type is TaskType.TOKEN_CLASSIFICATION} \
        == {"udpos": "plain", "panx": "iob", "ccg": "plain"}


def test_tagging_f1_rejects_an_unknown_tag_scheme():
    with pytest.raises(ValueError, match="unknown tag scheme 'bio'; expected one of: iob, plain"):
        metrics.tagging_f1([["O"]], [["O"]], "bio")


@pytest.mark.skipif(not os.environ.get(XTREME_MOCK_DATA),
                    reason=f"set {XTREME_MOCK_DATA} to a google-research/xtreme checkout's mock_test_data folder")
def test_upos_f1_reproduces_the_official_evaluate_test():
    # evaluate_test.py: per-language f1/precision/recall of every UD-POS language, then the plain mean. Read as
    # seqeval 1.x reads the tags, the same files average 70.398.
    folder = Path(os.environ[XTREME_MOCK_DATA])
    read_tag = lambda path: [block.split("\n") for block in path.read_text(encoding="utf-8").strip().split("\n\n")]
    langs = ("af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo "
             "zh").split()
    files = [(read_tag(folder / "labels" / "udpos" / f"test-{lang}.tsv"),
              read_tag(folder / "predictions" / "udpos" / f"test-{lang}.tsv")) for lang in langs]
    averages = {scheme: {f"avg_{name}": sum(metrics.tagging_f1(gold, predicted, scheme)[name]
                                            for gold, predicted in files) / len(files)
                         for name in ("f1", "precision", "recall")} for scheme in ("plain", "iob")}
    assert averages["plain"] == {
        "avg_f1": 70.21746048354693, "avg_precision": 71.02232625883823, "avg_recall": 69.54982073976082}
    assert round(averages["iob"]["avg_f1"], 3) == 70.398


def test_squad_em_f1_takes_the_best_gold_answer_and_scores_unanswered_questions_0():
    gold = {
        "q1": ["The Eiffel Tower"],
        "q2": ["Paris, France", "Paris"],
        "q3": ["1889"],
    }
    predictions = {"q1": "eiffel tower!", "q2": "the city of Paris"}
    # q1: "the eiffel tower" -> drop "the" -> [eiffel, tower]; "eiffel tower!" -> drop "!" -> same: EM 1, F1 1.
    # q2: pred -> [city, of, paris]. vs [paris, france]: 1 common, P 1/3, R 1/2, F1 = (2/6)/(5/6) = 0.4;
    #     vs [paris]: P 1/3, R 1, F1 = (2/3)/(4/3) = 0.5 -> max 0.5; EM 0.
    # q3: no prediction -> 0.
    # EM = 100 * 1/3 = 33.33; F1 = 100 * (1 + 0.5 + 0) / 3 = 50.
    scores = metrics.squad_em_f1(gold, predictions)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(50.0)


@pytest.mark.parametrize("lang, gold, prediction, squad, mlqa", [
    # "¿" and "。" are Unicode punctuation (category Po) but not ASCII: SQuAD keeps them, MLQA drops them.
    # es: SQuAD -> [¿río, amazonas] vs [el, río, amazonas] ("el" is no English article): 1 common,
    #     P 1/2, R 1/3, F1 = (2/6)/(5/6) = 0.4. MLQA es -> [río, amazonas] both: EM 1.
    ("es", "el río Amazonas", "¿río Amazonas?", (0.0, 40.0), (100.0, 100.0)),
    # de: SQuAD -> [den, bundestag] vs [der, bundestag]: P = R = 1/2, F1 0.5. MLQA de drops both articles.
    ("de", "der Bundestag", "den Bundestag", (0.0, 50.0), (100.0, 100.0)),
    # zh: SQuAD sees one token each ("北京大学" vs "在北京。"): 0. MLQA zh drops "。" and splits every CJK character:
    #     [在, 北, 京] vs [北, 京, 大, 学]: 2 common, P 2/3, R 2/4, F1 = (2/3)/(7/6) = 4/7 = 57.14.
    ("zh", "北京大学", "在北京。", (0.0, 0.0), (0.0, 400 / 7)),
    # zh: "、" is punctuation; Latin runs stay whole: [iphone, 手, 机] both.
    ("zh", "iPhone手机", "iPhone、手机", (0.0, 0.0), (100.0, 100.0)),
])
def test_qa_prediction_under_squad_and_mlqa_normalisation(lang, gold, prediction, squad, mlqa):
    as_scores = lambda pair: {"exact_match": pytest.approx(pair[0]), "f1": pytest.approx(pair[1])}
    assert metrics.squad_em_f1({"q": [gold]}, {"q": prediction}) == as_scores(squad)
    assert metrics.mlqa_em_f1({"q": [gold]}, {"q": prediction}, lang) == as_scores(mlqa)


@pytest.mark.parametrize("lang, gold, prediction, exact_match", [
    ("en", "the answer", "answer", 100.0),
    ("hi", "the answer", "answer", 0.0),  # Hindi has no article list
    ("vi", "của Hà Nội", "Hà Nội", 100.0),
    ("ar", "الكتاب", "كتاب", 100.0),
    # MLQA's Arabic pattern removes "ال" inside words too: "سؤال" -> "سؤ".
    ("ar", "سؤال", "سؤ", 100.0),
])
def test_mlqa_article_lists_per_language(lang, gold, prediction, exact_match):
    assert metrics.mlqa_em_f1({"q": [gold]}, {"q": prediction}, lang)["exact_match"] == exact_match


def test_mlqa_rejects_a_language_without_normalisation_rules():
    with pytest.raises(ValueError, match=r"'fr'.*en, es, de, vi, ar, hi, zh"):
        metrics.mlqa_em_f1({"q": ["x"]}, {"q": "x"}, "fr")


def test_qa_scorers_reject_questions_without_gold_answers():
    with pytest.raises(ValueError, match="'q1' has no gold answer"):
        metrics.squad_em_f1({"q1": []}, {"q1": "x"})
    with pytest.raises(ValueError, match="no gold questions"):
        metrics.squad_em_f1({}, {})


def test_bucc_f1_compares_pair_sets():
    gold = {("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-3"), ("de-4", "en-4")}
    predicted = [("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-9"), ("de-1", "en-1")]
    # Set of 3 predictions, 2 correct: P = 2/3 = 66.67, R = 2/4 = 50, F1 = 2(2/3)(1/2)/(2/3 + 1/2) = 4/7 = 57.14.
    assert metrics.bucc_f1(gold, predicted) == {
        "f1": pytest.approx(400 / 7), "precision": pytest.approx(200 / 3), "recall": pytest.approx(50.0)}
    assert metrics.bucc_f1(gold, [("de-5", "en-5")]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


# Rows of norm 3 or 5, so that after L2 normalisation every cosine is a fraction worked out by hand.
SRC = np.array([[3.0, 0, 0], [0, 5, 0]])             # x0 = (1, 0, 0), x1 = (0, 1, 0)
TGT = np.array([[2.0, 2, 1], [3, 0, 4], [0, 3, 4]])  # y0 = (2/3, 2/3, 1/3) a hub, y1 = (.6, 0, .8), y2 = (0, .6, .8)


def test_mine_bitext_candidates_prefers_the_margin_over_a_hub_neighbour():
    # Cosines: x0.y = (2/3, .6, 0), x1.y = (2/3, 0, .6). Plain nearest neighbour would pair both with the hub y0.
    # k=2. fwd_mean (x's 2 best): x0 (2/3 + .6)/2 = 19/30, x1 19/30. bwd_mean (y's 2 best of x0, x1):
    # y0 2/3, y1 .3, y2 .3.
    # margin(x0, y0) = (2/3) / ((19/30 + 20/30)/2) = 40/39 = 1.026; margin(x0, y1) = .6 / ((19/30 + 9/30)/2) = 9/7.
    # Symmetrically x1 -> y2 at 9/7; y0's best is x0 at 40/39, but x0 is taken by then (9/7 > 40/39).
    candidates = metrics.mine_bitext_candidates(SRC, TGT, ["s0", "s1"], ["t0", "t1", "t2"], k=2)
    assert candidates == {("s0", "t1"): pytest.approx(9 / 7), ("s1", "t2"): pytest.approx(9 / 7)}


def test_mine_bitext_candidates_caps_the_neighbourhood_at_the_other_side():
    # Default k=4 > 3 targets: fwd_mean uses all 3, x0: (2/3 + .6 + 0)/3 = 19/45; bwd_mean still uses the 2 sources.
    # margin(x0, y1) = .6 / ((19/45 + 13.5/45)/2) = .6 * 90/32.5 = 108/65 = 1.6615;
    # margin(x0, y0) = (2/3) / ((19/45 + 30/45)/2) = 60/49 = 1.2245.
    candidates = metrics.mine_bitext_candidates(SRC, TGT, ["s0", "s1"], ["t0", "t1", "t2"])
    assert candidates == {("s0", "t1"): pytest.approx(108 / 65), ("s1", "t2"): pytest.approx(108 / 65)}


def test_mine_bitext_candidates_needs_one_id_per_row():
    with pytest.raises(ValueError, match="one id per embedding row"):
        metrics.mine_bitext_candidates(SRC, TGT, ["s0"], ["t0", "t1", "t2"])


# Scores are powers of two apart so the midpoints are exact.
CANDIDATES = {("s-c", "t-c"): 0.625, ("s-a", "t-a"): 0.875, ("s-e", "t-e"): 0.375, ("s-b", "t-b"): 0.75,
              ("s-d", "t-d"): 0.5}
GOLD = {("s-a", "t-a"), ("s-c", "t-c"), ("s-f", "t-f")}  # s-f is never mined


def test_bucc_optimize_threshold_takes_the_midpoint_after_the_best_f1():
    # By descending score, with 3 gold pairs (utils_retrieve.bucc_optimize):
    #   a .875 gold   1/1 correct: P 1,   R 1/3 -> F1 = (2/3)/(4/3) = .5   best -> th (.875 + .75)/2
    #   b .75         1/2:         P 1/2, R 1/3 -> F1 = (1/3)/(5/6) = .4
    #   c .625 gold   2/3:         P 2/3, R 2/3 -> F1 = 2/3               best -> th (.625 + .5)/2 = .5625
    #   d .5          2/4:         P 1/2, R 2/3 -> F1 = (2/3)/(7/6) = 4/7 = .571
    #   e .375        2/5:         P 2/5, R 2/3 -> F1 = (8/15)/(16/15) = .5
    assert metrics.bucc_optimize_threshold(CANDIDATES, GOLD) == 0.5625


def test_bucc_extract_keeps_scores_at_or_above_the_threshold_and_scores_them():
    extracted = metrics.bucc_extract(CANDIDATES, 0.5625)
    assert extracted == [("s-c", "t-c"), ("s-a", "t-a"), ("s-b", "t-b")]
    # 2 of 3 extracted are gold, 2 of 3 gold found: P = R = F1 = 66.67.
    assert metrics.bucc_f1(GOLD, extracted)["f1"] == pytest.approx(200 / 3)
    assert metrics.bucc_extract(CANDIDATES, 0.625) == [("s-c", "t-c"), ("s-a", "t-a"), ("s-b", "t-b")]


def test_bucc_optimize_threshold_at_the_last_candidate_and_without_any_correct_one():
    # Best F1 on the last candidate: the official code indexes past the end; here every candidate is kept.
    assert metrics.bucc_optimize_threshold({("s", "t"): 0.8, ("s-a", "t-a"): 0.3}, {("s-a", "t-a")}) == 0.3
    assert metrics.bucc_optimize_threshold({("s", "t"): 0.8}, {("s-a", "t-a")}) == 0.0


def test_map_at_20_follows_lareqa_average_precision_at_k():
    ranked = {
        "q1": ["a", "x", "b", "y"],      # targets a, b at ranks 1 and 3: (1/1 + 2/3)/2 = 5/6
        "q2": ["x", "y", "z", "c"],      # target c at rank 4: 1/4
        "q3": ["a", "a", "b"],           # repeated a counts once: (1/1 + 2/3)/2 = 5/6
    }
    gold = {"q1": {"a", "b"}, "q2": ["c"], "q3": {"a", "b"}, "q4": {"d"}}  # q4 has no ranking: 0
    # mAP = (5/6 + 1/4 + 5/6 + 0)/4 = (10/12 + 3/12 + 10/12)/4 = 23/48 = 47.92
    assert metrics.map_at_k(ranked, gold) == {"map_at_20": pytest.approx(100 * 23 / 48)}


def test_map_at_k_cuts_at_k_and_divides_by_min_targets_k():
    assert metrics.map_at_k({"q": [f"x{i}" for i in range(20)] + ["a"]}, {"q": {"a"}}) == {"map_at_20": 0.0}
    # 3 targets, k=2, both top-2 are targets: (1/1 + 2/2) / min(3, 2) = 1.
    assert metrics.map_at_k({"q": ["a", "b", "c"]}, {"q": {"a", "b", "c"}}, k=2) == {"map_at_2": 100.0}


def test_mewslix_map_at_20_is_the_reciprocal_rank_of_the_single_gold_entity():
    assert metrics.mewslix_map_at_20({"m1": ["Q5", "Q6", "Q7", "Q1"]}, {"m1": ["Q1"]}) == {"map_at_20": 25.0}
    assert metrics.mewslix_map_at_20({"m1": [f"Q{i}" for i in range(100, 120)] + ["Q1"]},
                                     {"m1": ["Q1"]}) == {"map_at_20": 0.0}
    # Ranks 4, 1 and no prediction: (1/4 + 1 + 0)/3 = 41.67; the gold QID is stripped as in utils_mewslix.evaluate.
    predictions = {"m1": ["Q5", "Q6", "Q7", "Q1"], "m2": ["Q2", "Q1"]}
    gold = {"m1": ["Q1"], "m2": [" Q2\n"], "m3": ["Q3"]}
    assert metrics.mewslix_map_at_20(predictions, gold) == {"map_at_20": pytest.approx(125 / 3)}


def test_mewslix_needs_exactly_one_gold_entity_per_example():
    with pytest.raises(ValueError, match="'m1' needs exactly one gold entity, got 2"):
        metrics.mewslix_map_at_20({"m1": ["Q1"]}, {"m1": ["Q1", "Q2"]})

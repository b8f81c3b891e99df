"""Benchmark metrics against values worked out by hand, with the arithmetic in each test."""

import numpy as np
import pytest

from components import metrics


def test_accuracy_is_on_a_0_100_scale():
    assert metrics.accuracy(["a", "b", "c", "d"], ["a", "b", "c", "x"]) == {"accuracy": 75.0}


def test_tagging_f1_reports_seqeval_chunk_f1_for_upos_beside_token_accuracy():
    # benchmarks.md §4.4: seqeval reads the first letter of a UPOS tag as an IOB prefix (N|OUN, V|ERB, S|CONJ ...).
    # Gold chunks: OUN[0-1] ERB[2] CONJ[3] CONJ[4] DJ[5] UNCT[6]  (S- tags are single-token chunks) -> 6
    # Pred chunks: OUN[0] ERB[1-2] CONJ[3] CONJ[4] DJ[5] UNCT[6]                                      -> 6
    # Matching: CONJ[3] CONJ[4] DJ[5] UNCT[6] = 4 -> P = R = F1 = 4/6 = 66.67; token accuracy 6/7 = 85.71.
    gold = [["NOUN", "NOUN", "VERB", "SCONJ", "SCONJ", "ADJ", "PUNCT"]]
    pred = [["NOUN", "VERB", "VERB", "SCONJ", "SCONJ", "ADJ", "PUNCT"]]
    scores = metrics.tagging_f1(gold, pred)
    assert scores["f1"] == pytest.approx(66.67, abs=0.005)
    assert scores["precision"] == scores["recall"] == pytest.approx(400 / 6)
    assert scores["token_accuracy"] == pytest.approx(85.71, abs=0.005)


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

"""Metrics exactly as google-research/xtreme defines them, on a 0-100 scale with MLflow-safe names.

Each function names the official function it mirrors (../shared/docs/benchmarks.md §4). Tatoeba accuracy lives in
`components.retrieval.tatoeba_accuracy`.
"""

import re
import string
import unicodedata
from collections import Counter
from typing import Callable, Collection, Mapping, Sequence

import numpy as np
from seqeval.metrics import f1_score, precision_score, recall_score

Pair = tuple[str, str]

_ENGLISH_ARTICLES = r"\b(a|an|the)\b"
# MLQA's `remove_articles`. Its Arabic pattern `\sال^|ال` has a first branch that can never match ('^' after two
# consumed characters), so every "ال" is replaced, inside words too; hi and zh have no articles.
_MLQA_ARTICLES = {
    "en": _ENGLISH_ARTICLES,
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "ar": "ال",
    "hi": None,
    "zh": None,
}
_CJK_CHARACTER = re.compile("([\u4e00-\u9fa5])")


def accuracy(labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """XTREME `accuracy`: 100 * share of predictions equal to the label."""
    if len(labels) != len(predictions) or not labels:
        raise ValueError(f"need as many predictions as labels, and at least one: {len(predictions)} vs {len(labels)}")
    return {"accuracy": 100.0 * sum(p == l for p, l in zip(predictions, labels)) / len(labels)}


def tagging_f1(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]], tag_scheme: str
               ) -> dict[str, float]:
    """XTREME `f1`: micro chunk F1/precision/recall as seqeval computes it, plus token accuracy beside it.

    The official `evaluate.py` calls seqeval's `f1_score`, `precision_score` and `recall_score`; which chunks a tag
    sequence holds depends on the seqeval version, and the official test (`evaluate_test.py`, UD-POS avg_f1
    70.21746048354693 on its mock data) holds with seqeval 0.0.12. `tag_scheme` (the task's `TaskSpec.tag_scheme`):

    - `iob` (PAN-X): seqeval 1.2.2's default mode. On B-/I-/O tags it finds the same chunks as 0.0.12.
    - `plain` (UPOS, CCG: tags without IOB prefixes): `seqeval_0012_chunks`. seqeval 1.x would drop each tag's first
      character as an IOB prefix, so that CCONJ and SCONJ become one type and a CCONJ directly before an SCONJ is
      no chunk at all.

    For UD-POS this "F1" is a chunk F1 over UPOS tags, not token accuracy; both are reported.
    """
    if tag_scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown tag scheme {tag_scheme!r}; expected one of: {', '.join(TAG_SCHEMES)}")
    flat_labels = [tag for sentence in labels for tag in sentence]
    flat_predictions = [tag for sentence in predictions for tag in sentence]
    return {**TAG_SCHEMES[tag_scheme](labels, predictions),
            "token_accuracy": accuracy(flat_labels, flat_predictions)["accuracy"]}


def _iob_chunk_scores(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    return {"f1": 100.0 * f1_score(labels, predictions), "precision": 100.0 * precision_score(labels, predictions),
            "recall": 100.0 * recall_score(labels, predictions)}


def _plain_chunk_scores(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    gold, predicted = set(seqeval_0012_chunks(labels)), set(seqeval_0012_chunks(predictions))
    precision, recall, f1 = _precision_recall_f1(len(gold & predicted), len(predicted), len(gold))
    return {"f1": 100.0 * f1, "precision": 100.0 * precision, "recall": 100.0 * recall}


TAG_SCHEMES = {"iob": _iob_chunk_scores, "plain": _plain_chunk_scores}

Chunk = tuple[str, int, int]  # (type, first position, last position)


def seqeval_0012_chunks(sentences: Sequence[Sequence[str]]) -> list[Chunk]:
    """The chunks seqeval 0.0.12's `get_entities` finds (default prefix mode), the reading XTREME's UD-POS F1 has.

    Sentences are joined with an `O` after each, so positions count over the whole list and no chunk crosses a
    sentence end. Each tag is read as a letter, its first character, and a type, what follows its last '-' (the
    whole tag when it has none: CCONJ is letter C, type CCONJ). Between the previous tag and the current one a chunk
    ends (`end_of_chunk`) when the previous letter is E or S, when a B or I is followed by B, S or O, or when the type
    changes after a letter other than O or '.'; a chunk starts at the current tag (`start_of_chunk`) when its letter
    is B or S, when an E or I follows E, S or O, or when the type changes on a letter other than O or '.'.

    On UPOS tags this makes each run of one tag a chunk, except SCONJ and SYM (letter S), one chunk per word.
    """
    tags = [tag for sentence in sentences for tag in (*sentence, "O")]
    chunks, previous_letter, previous_type, start = [], "O", "", 0
    for position, tag in enumerate((*tags, "O")):
        letter, type_ = tag[0], tag.split("-")[-1]
        if _chunk_ends(previous_letter, letter, previous_type, type_):
            chunks.append((previous_type, start, position - 1))
        if _chunk_starts(previous_letter, letter, previous_type, type_):
            start = position
        previous_letter, previous_type = letter, type_
    return chunks


def _chunk_ends(previous_letter: str, letter: str, previous_type: str, type_: str) -> bool:
    """seqeval 0.0.12 `end_of_chunk`."""
    return (previous_letter in "ES"
            or (previous_letter in "BI" and letter in "BSO")
            or (previous_letter not in "O." and previous_type != type_))


def _chunk_starts(previous_letter: str, letter: str, previous_type: str, type_: str) -> bool:
    """seqeval 0.0.12 `start_of_chunk`."""
    return (letter in "BS"
            or (previous_letter in "ESO" and letter in "EI")
            or (letter not in "O." and previous_type != type_))


def squad_em_f1(gold_answers_by_id: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 EM and F1, as XTREME's `squad_em_f1` → `third_party/evaluate_squad.py::evaluate`.

    English normalisation (`normalize_answer`: lowercase, drop ASCII punctuation, drop a/an/the, split on
    whitespace) for every language: XTREME scores XQuAD and TyDiQA-GoldP this way.

    Args:
        gold_answers_by_id: question id -> its gold answer texts.
        predictions: question id -> predicted answer text; a question without one scores 0.

    Returns:
        `exact_match` and `f1`, each the per-question maximum over gold answers averaged over all gold questions.
    """
    return _qa_em_f1(gold_answers_by_id, predictions, _squad_tokens)


def mlqa_em_f1(
    gold_answers_by_id: Mapping[str, Sequence[str]], predictions: Mapping[str, str], lang: str,
) -> dict[str, float]:
    """MLQA EM and F1 with its language-aware normalisation, as XTREME's `mlqa_em_f1` → `evaluate_mlqa.py::evaluate`.

    `normalize_answer(s, lang)`: lowercase, drop Unicode punctuation (category P*) and ASCII punctuation, drop the
    language's articles, then split on whitespace, and for zh also around every character in U+4E00-U+9FA5
    (`mixed_segmentation`).

    Args:
        gold_answers_by_id: question id -> its gold answer texts.
        predictions: question id -> predicted answer text; a question without one scores 0.
        lang: the answer language, one of en es de vi ar hi zh.

    Raises:
        ValueError: `lang` is not an MLQA language.
    """
    if lang not in _MLQA_ARTICLES:
        raise ValueError(f"MLQA has no normalisation for language {lang!r}; supported: {', '.join(_MLQA_ARTICLES)}")
    articles = _MLQA_ARTICLES[lang]
    split = _mixed_segmentation if lang == "zh" else str.split
    return _qa_em_f1(gold_answers_by_id, predictions,
                     lambda text: _normalized_tokens(text, _is_unicode_punctuation, articles, split))


def _squad_tokens(text: str) -> list[str]:
    return _normalized_tokens(text, string.punctuation.__contains__, _ENGLISH_ARTICLES, str.split)


def _is_unicode_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P") or char in string.punctuation


def _mixed_segmentation(text: str) -> list[str]:
    # MLQA also makes each punctuation mark a token, but punctuation is already gone by the time this runs.
    return _CJK_CHARACTER.sub(r" \1 ", text).split()


def _normalized_tokens(
    text: str, is_punctuation: Callable[[str], bool], articles: str | None, split: Callable[[str], list[str]],
) -> list[str]:
    """The tokens of `normalize_answer(text)`, in the official order: lower, punctuation, articles, whitespace."""
    text = "".join(char for char in text.lower() if not is_punctuation(char))
    if articles:
        text = re.sub(articles, " ", text)
    return split(text)


def _qa_em_f1(
    gold_answers_by_id: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
    tokens: Callable[[str], list[str]],
) -> dict[str, float]:
    """The shared `evaluate` loop of evaluate_squad.py and evaluate_mlqa.py, with `tokens` as normalisation."""
    if not gold_answers_by_id:
        raise ValueError("no gold questions to score")
    exact_match = f1 = 0.0
    for question_id, answers in gold_answers_by_id.items():
        if not answers:
            raise ValueError(f"question {question_id!r} has no gold answer")
        if question_id not in predictions:
            continue
        predicted = tokens(predictions[question_id])
        gold = [tokens(answer) for answer in answers]
        exact_match += max(float(predicted == answer) for answer in gold)
        f1 += max(_token_f1(predicted, answer) for answer in gold)
    return {"exact_match": 100.0 * exact_match / len(gold_answers_by_id),
            "f1": 100.0 * f1 / len(gold_answers_by_id)}


def _token_f1(predicted: list[str], gold: list[str]) -> float:
    """SQuAD `f1_score`: bag-of-tokens overlap F1."""
    common = sum((Counter(predicted) & Counter(gold)).values())
    return _precision_recall_f1(common, len(predicted), len(gold))[2]


def _precision_recall_f1(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 on a 0-1 scale from counts; all 0 when nothing is correct, as in every official
    scorer (which never divides by an empty prediction)."""
    if correct == 0:
        return 0.0, 0.0, 0.0
    precision, recall = correct / predicted, correct / gold
    return precision, recall, 2 * precision * recall / (precision + recall)


def bucc_f1(gold_pairs: Collection[Pair], predicted_pairs: Collection[Pair]) -> dict[str, float]:
    """XTREME `bucc_f1`: precision, recall and F1 of the predicted (source id, English id) pairs as sets."""
    gold, predicted = set(gold_pairs), set(predicted_pairs)
    precision, recall, f1 = _precision_recall_f1(len(gold & predicted), len(predicted), len(gold))
    return {"f1": 100.0 * f1, "precision": 100.0 * precision, "recall": 100.0 * recall}


def mine_bitext_candidates(
    src_embeddings: np.ndarray, tgt_embeddings: np.ndarray, src_ids: Sequence[str], tgt_ids: Sequence[str],
    k: int = 4,
) -> dict[Pair, float]:
    """BUCC candidate pairs with their ratio-margin scores, as `utils_retrieve.py::mine_bitext` in mode 'mine'.

    Mirrors the call in `evaluate_retrieval.py`: cosine on L2-normalised vectors, `margin='ratio'`,
    `retrieval='max'`, `neighborhood=k`, `threshold=0`. Each side's best candidate by
    `sim(x, y) / ((fwd_mean[x] + bwd_mean[y]) / 2)` is proposed, where fwd_mean / bwd_mean are the mean similarity
    of a sentence to its k nearest neighbours on the other side; proposals are then taken in descending score,
    skipping any whose source or target is already paired, and kept when the score is positive.

    The official script first keeps one row per distinct sentence text and drops texts that occur under several
    ids (`text_load_unify`, `read_sent2id`): callers pass one row per id they want scored.

    Args:
        src_embeddings: `[n_src, dim]` sentence embeddings of the non-English side.
        tgt_embeddings: `[n_tgt, dim]` sentence embeddings of the English side.
        src_ids, tgt_ids: the ids of those rows (e.g. "zh-000000057", "en-000008530").
        k: neighbourhood size of the margin (XTREME: 4); capped at the other side's size, as the official script.

    Returns:
        (source id, target id) -> margin score, each source and each target at most once.
    """
    x, y = _l2_normalised(src_embeddings), _l2_normalised(tgt_embeddings)
    if len(x) != len(src_ids) or len(y) != len(tgt_ids) or not len(x) or not len(y):
        raise ValueError(f"need one id per embedding row and rows on both sides: {len(src_ids)} ids for {len(x)} "
                         f"source rows, {len(tgt_ids)} ids for {len(y)} target rows")
    if k < 1:
        raise ValueError(f"k must be a positive neighbourhood size, got {k}")
    fwd_sim, fwd_idx = _knn(x, y, min(k, len(y)))
    bwd_sim, bwd_idx = _knn(y, x, min(k, len(x)))
    fwd_mean, bwd_mean = fwd_sim.mean(axis=1), bwd_sim.mean(axis=1)
    fwd_best, fwd_scores = _best_by_margin(fwd_sim, fwd_idx, fwd_mean, bwd_mean)
    bwd_best, bwd_scores = _best_by_margin(bwd_sim, bwd_idx, bwd_mean, fwd_mean)
    proposals = list(zip(range(len(x)), fwd_best, fwd_scores)) + list(zip(bwd_best, range(len(y)), bwd_scores))
    return {(src_ids[i], tgt_ids[j]): score for i, j, score in _one_to_one(proposals)}


def _best_by_margin(
    sim: np.ndarray, neighbours: np.ndarray, own_mean: np.ndarray, other_mean: np.ndarray,
) -> tuple[list[int], list[float]]:
    """Each query's neighbour with the highest ratio margin `sim / ((own_mean + other_mean[neighbour]) / 2)`
    (`score_candidates`), and that margin."""
    margins = sim / ((own_mean[:, None] + other_mean[neighbours]) / 2)
    best = neighbours[np.arange(len(neighbours)), margins.argmax(axis=1)]
    return best.tolist(), margins.max(axis=1).tolist()


def _one_to_one(proposals: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """`retrieval='max'`: (source, target, score) proposals by descending score, skipping any whose source or target
    is already taken; only positive scores are kept (`threshold=0`)."""
    kept, seen_src, seen_tgt = [], set(), set()
    for i, j, score in sorted(proposals, key=lambda proposal: -proposal[2]):
        if i not in seen_src and j not in seen_tgt:
            seen_src.add(i)
            seen_tgt.add(j)
            if score > 0:
                kept.append((i, j, score))
    return kept


def _l2_normalised(embeddings: np.ndarray) -> np.ndarray:
    # float32 like faiss.normalize_L2; a zero row stays zero, as there.
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)


def _knn(queries: np.ndarray, database: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products (faiss `IndexFlatIP.search`): similarities and indices, best first per row."""
    sims, indices = [], []
    for start in range(0, len(queries), block):
        similarity = queries[start:start + block] @ database.T  # blocks bound memory on BUCC-size sets
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        sims.append(np.take_along_axis(top_sims, order, axis=1))
        indices.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(sims), np.concatenate(indices)


def bucc_optimize_threshold(candidates_with_scores: Mapping[Pair, float], gold_pairs: Collection[Pair]) -> float:
    """The score threshold that maximises F1 on `gold_pairs`, as `utils_retrieve.py::bucc_optimize`.

    Candidates are taken in descending score; after each one F1 is computed, and at the first strict maximum the
    threshold is the midpoint between that candidate's score and the next one's. If the maximum falls on the last
    candidate (where the official code raises IndexError) the threshold is its score, so that every candidate is
    kept; with no correct candidate at all it is 0, as there.
    """
    items = sorted(candidates_with_scores.items(), key=lambda item: -item[1])
    gold = set(gold_pairs)
    threshold, best_f1, correct = 0.0, 0.0, 0
    for extracted, (pair, score) in enumerate(items, start=1):
        correct += pair in gold
        f1 = _precision_recall_f1(correct, extracted, len(gold))[2]
        if f1 > best_f1:
            best_f1 = f1
            threshold = (score + items[extracted][1]) / 2 if extracted < len(items) else score
    return threshold


def bucc_extract(candidates_with_scores: Mapping[Pair, float], threshold: float) -> list[Pair]:
    """The candidate pairs scoring at least `threshold`, in candidate order, as `utils_retrieve.py::bucc_extract`."""
    return [pair for pair, score in candidates_with_scores.items() if score >= threshold]


def map_at_k(
    ranked_candidate_ids_per_query: Mapping[str, Sequence[str]], gold_ids_per_query: Mapping[str, Collection[str]],
    k: int = 20,
) -> dict[str, float]:
    """Mean AP@k over all gold queries, as `utils_lareqa.py::mean_avg_prec_at_k` (LAReQA uses k=20).

    AP@k (`average_precision_at_k`): over the top k, each candidate that is a target, counted at its first
    occurrence only, adds hits_so_far / rank; the sum is divided by min(number of targets, k).

    Args:
        ranked_candidate_ids_per_query: query id -> candidate ids, best first; a query without one scores 0.
        gold_ids_per_query: query id -> the ids of its correct candidates (at least one).
        k: the cutoff.

    Returns:
        `map_at_<k>` (e.g. `map_at_20`: MLflow names cannot hold '@').
    """
    if not gold_ids_per_query:
        raise ValueError("no gold queries to score")
    if k < 1:
        raise ValueError(f"k must be a positive cutoff, got {k}")
    total = 0.0
    for query_id, targets in gold_ids_per_query.items():
        if not targets:
            raise ValueError(f"query {query_id!r} has no gold candidate")
        total += _average_precision_at_k(set(targets), ranked_candidate_ids_per_query.get(query_id, ()), k)
    return {f"map_at_{k}": 100.0 * total / len(gold_ids_per_query)}


def _average_precision_at_k(targets: set[str], ranked: Sequence[str], k: int) -> float:
    score, found = 0.0, set()
    for rank, candidate in enumerate(ranked[:k], start=1):
        if candidate in targets and candidate not in found:
            found.add(candidate)
            score += len(found) / rank
    return score / min(len(targets), k)


def mewslix_map_at_20(
    predictions: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[str]],
) -> dict[str, float]:
    """Mewsli-X mAP@20 of one language, as XTREME's `mewslix_map20` → `utils_mewslix.py::evaluate(k=20)`.

    With one gold entity per mention, AP@20 is the reciprocal rank of the gold QID within the top 20 (0 beyond),
    so this is `map_at_k` with k=20. The official macro average over languages is the caller's to take.

    Args:
        predictions: example id -> entity QIDs, best first; an example without predictions scores 0.
        gold: example id -> a singleton list with its gold QID (the official label file format).

    Returns:
        `map_at_20`.
    """
    for example_id, qids in gold.items():
        if len(qids) != 1:
            raise ValueError(f"example {example_id!r} needs exactly one gold entity, got {len(qids)}")
    # The official scorer strips the gold QID (read from JSON) but not the predicted ones.
    return map_at_k(predictions, {example_id: [qids[0].strip()] for example_id, qids in gold.items()}, k=20)

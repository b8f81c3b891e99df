"""Sentence retrieval straight from an encoder: pooled embeddings, cosine nearest neighbours, Tatoeba and BUCC.

Tatoeba and BUCC get no task training (jiant's UNTRAINED_TASKS): the encoder, pretrained or after intermediate-task
training, embeds both sides. In Tatoeba each English sentence retrieves its translation; in BUCC parallel pairs are
mined with the ratio margin and kept above a threshold optimised on the dev gold. Layer and pooling differ across
the reference implementations (../shared/docs/benchmarks.md §4.4), so both are parameters for callers to log.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from components import settings
from components.errors import XstiltsInputError, not_utf8
from components.metrics import Pair, bucc_extract, bucc_f1, bucc_optimize_threshold, mine_bitext_candidates
from components.predictions import PredictionFile, prediction_file, retrieval_table
from components.tasks import get_task

POOLINGS = ("mean", "cls")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pools `[batch, tokens, hidden]` states to `[batch, hidden]`: the mask-weighted mean, or the first token."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def check_embedding_options(model: PreTrainedModel, layer: int, pooling: str, batch_size: int) -> None:
    """Raises `XstiltsInputError` for a non-positive batch size, an unknown pooling or a layer the model lacks."""
    if batch_size < 1:
        raise XstiltsInputError(f"batch_size must be a positive number of texts, got {batch_size}")
    if pooling not in POOLINGS:
        raise XstiltsInputError(f"unknown pooling {pooling!r}; expected one of: {', '.join(POOLINGS)}")
    hidden_state_index(model, layer)


def hidden_state_index(model: PreTrainedModel, layer: int) -> int:
    """`layer` as a non-negative index into the model's `hidden_states` (-1 on a 12-layer model is 12), so logged
    layers compare across models.

    Raises:
        XstiltsInputError: the model has no such hidden state.
    """
    n_states = model.config.num_hidden_layers + 1
    if not -n_states <= layer < n_states:
        raise XstiltsInputError(
            f"layer {layer} is out of range: the model has {n_states} hidden states "
            f"(0 = embeddings, {n_states - 1} or -1 = last layer)"
        )
    return layer % n_states


@torch.inference_mode()
def embed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    layer: int = -1,
    pooling: str = "mean",
    prefix: str = "",
    batch_size: int = 64,
    max_length: int | None = None,
) -> np.ndarray:
    """Pooled fp32 embeddings of `texts`, one row per text, in input order.

    Texts are batched in order of token length so each batch pads only to its own longest text (several times
    faster than padding everything to one length); rows are put back in input order before returning.

    Args:
        layer: index into the model's `hidden_states` (0 = embedding output, -1 = last layer).
        pooling: "mean" over non-padding tokens, or "cls" (first token).
        prefix: put before every text (E5 models expect "query: ").
        max_length: truncation length; defaults to the tokenizer's `model_max_length`.
    """
    if not texts:
        raise XstiltsInputError("no texts to embed")
    check_embedding_options(model, layer, pooling, batch_size)
    prefixed = [prefix + text for text in texts]
    lengths = [len(ids) for ids in tokenizer(prefixed, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout would make embeddings random
    try:
        batches = [
            _embed_batch(model, tokenizer, [prefixed[i] for i in order[start:start + batch_size]],
                         layer, pooling, max_length, device)
            for start in range(0, len(order), batch_size)
        ]
    finally:
        model.train(was_training)
    sorted_embeddings = np.concatenate(batches)
    embeddings = np.empty_like(sorted_embeddings)
    embeddings[order] = sorted_embeddings
    return embeddings


def _embed_batch(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], layer: int, pooling: str,
    max_length: int | None, device: torch.device,
) -> np.ndarray:
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    hidden = model(**inputs, output_hidden_states=True).hidden_states[layer]
    return pool(hidden, inputs["attention_mask"], pooling).float().cpu().numpy()


def nearest_neighbour(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each query row, the index of the candidate row with the highest cosine similarity."""
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    candidates = candidates / np.linalg.norm(candidates, axis=1, keepdims=True).clip(min=1e-12)
    return np.argmax(queries @ candidates.T, axis=1)


def tatoeba_accuracy(pred_indices: np.ndarray) -> float:
    """XTREME's Tatoeba accuracy on a 0-100 scale: the share of queries i whose retrieved index is i."""
    pred_indices = np.asarray(pred_indices)
    return float(100.0 * np.mean(pred_indices == np.arange(len(pred_indices))))


def retrieve_translations(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, src_texts: list[str], en_texts: list[str],
    **embed_options,
) -> np.ndarray:
    """For each English sentence, the index of the retrieved non-English sentence.

    Direction as in XTREME's `similarity_search(x=src, y=tgt)`: the non-English side is the index and each English
    sentence queries it, top-1 by cosine.

    Args:
        **embed_options: `layer`, `pooling`, `prefix`, `batch_size`, `max_length` of `embed`.
    """
    src = embed(model, tokenizer, src_texts, **embed_options)
    en = embed(model, tokenizer, en_texts, **embed_options)
    return nearest_neighbour(queries=en, candidates=src)


def retrieval_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, src_texts: list[str], en_texts: list[str],
    **embed_options,
) -> float:
    """Tatoeba accuracy of an encoder on aligned pairs (`src_texts[i]` translates `en_texts[i]`); see
    `retrieve_translations` for the direction and the options."""
    return tatoeba_accuracy(retrieve_translations(model, tokenizer, src_texts, en_texts, **embed_options))


def read_aligned_pairs(src_path: Path, en_path: Path, limit: int | None = None) -> tuple[list[str], list[str]]:
    """Line-aligned translations: line i of `src_path` translates line i of `en_path`.

    Args:
        limit: keep only the first `limit` pairs (a debug cap).

    Raises:
        XstiltsInputError: a file is missing or empty, the line counts differ, or `limit` is not positive.
    """
    if limit is not None and limit < 1:
        raise XstiltsInputError(f"limit must be a positive number of pairs, got {limit}")
    src, en = _read_lines(Path(src_path)), _read_lines(Path(en_path))
    if len(src) != len(en):
        raise XstiltsInputError(
            f"{src_path} has {len(src)} lines but {en_path} has {len(en)}; expected line-aligned translations"
        )
    if not src:
        raise XstiltsInputError(f"{src_path} and {en_path} are empty; expected line-aligned translations")
    return src[:limit], en[:limit]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise XstiltsInputError(f"{path}: file not found; expected one sentence per line")
    # Only "\n" ends a line: str.splitlines would also split on U+2028 and the like and break the alignment.
    try:
        with open(path, encoding="utf-8", newline="\n") as handle:
            return [line.rstrip("\r\n") for line in handle]
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None


def task_paths(task: str, split: str, lang: str, root: Path | None = None) -> tuple[Path, ...]:
    """The files of one split of a retrieval task in `lang` under the data root, in the task registry's order."""
    spec = get_task(task)
    spec.check_lang(lang)
    base = Path(root) if root else settings.data_root()
    return tuple(base / pattern.format(lang=lang) for pattern in spec.files[split])


def tatoeba_paths(lang: str, root: Path | None = None) -> tuple[Path, Path]:
    """The (non-English, English) Tatoeba files of `lang` under the data root, from the task registry."""
    src_path, en_path = task_paths("tatoeba", "test", lang, root)
    return src_path, en_path


def tatoeba_pairs(lang: str, limit: int | None = None, root: Path | None = None) -> tuple[list[str], list[str]]:
    """The (non-English, English) sentence lists of Tatoeba `lang`-en."""
    return read_aligned_pairs(*tatoeba_paths(lang, root), limit=limit)


@dataclass(frozen=True)
class RetrievalResult:
    """One language's retrieval evaluation.

    Attributes:
        metrics: the task's registry metrics on a 0-100 scale.
        n_examples: Tatoeba queries, or BUCC gold pairs.
        predictions: the prediction files, in the XTREME file format, each saying which split and items it holds.
        details: numbers that are no registry metric (BUCC: the threshold and the candidate counts).
        notes: how the numbers were obtained (the split scored, where the threshold came from, why they are
            optimistic); logged as params `<note>/<task>/<lang>`.
    """

    metrics: dict[str, float]
    n_examples: int
    predictions: tuple[PredictionFile, ...]
    details: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def evaluate_tatoeba(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, lang: str, limit: int | None = None,
    root: Path | None = None, **embed_options,
) -> RetrievalResult:
    """Tatoeba `lang`-en accuracy; the prediction file holds, per English sentence, the retrieved `lang` index, and
    its table each English query with its aligned `lang` sentence (gold) and the retrieved one (ids: line indices).

    Args:
        limit: keep only the first `limit` pairs (a debug cap).
        root: the data root; defaults to `settings.data_root()`.
        **embed_options: `layer`, `pooling`, `prefix`, `batch_size`, `max_length` of `embed`.
    """
    src, en = tatoeba_pairs(lang, root=root)
    predicted = retrieve_translations(model, tokenizer, src[:limit], en[:limit], **embed_options)
    lines = "".join(f"{index}\n" for index in predicted)
    scored = range(len(predicted))
    table = retrieval_table(scored, en, [{str(index): src[index]} for index in scored],
                            [{str(index): src[index]} for index in predicted])
    return RetrievalResult(
        metrics={"accuracy": tatoeba_accuracy(predicted)}, n_examples=len(predicted),
        predictions=(prediction_file(lang, "test", "tsv", lines, scored, len(src), table),),
        notes={"eval_split": "test"},
    )


@dataclass(frozen=True)
class Sentences:
    """One side of a BUCC split: sentence ids (`zh-000000001`) and texts, in file order."""

    ids: list[str]
    texts: list[str]

    def subset(self, keep: Collection[str]) -> "Sentences":
        """The rows whose id is in `keep`, in file order."""
        rows = [(sentence_id, text) for sentence_id, text in zip(self.ids, self.texts) if sentence_id in keep]
        return Sentences([sentence_id for sentence_id, _ in rows], [text for _, text in rows])

    def unified(self) -> tuple["Sentences", frozenset[str]]:
        """One row per distinct text under its first id, and the ids of the texts found under several ids.

        As the official pipeline: `text_load_unify` embeds and mines each distinct text once, then `read_sent2id`
        maps candidates back to ids and drops every text that occurs under more than one id (compared after
        stripping whitespace). A repeated text thus still competes in mining, and can take a partner away from
        another sentence, but never appears in a prediction.
        """
        first_id: dict[str, str] = {}
        for sentence_id, text in zip(self.ids, self.texts):
            first_id.setdefault(text, sentence_id)
        counts = Counter(text.strip() for text in self.texts)
        repeated = frozenset(sentence_id for text, sentence_id in first_id.items() if counts[text.strip()] > 1)
        return Sentences(list(first_id.values()), list(first_id)), repeated


@dataclass(frozen=True)
class BuccSplit:
    """One split of a BUCC language pair: both sides, and the gold pairs (empty where the benchmark withholds them)."""

    src: Sentences
    en: Sentences
    gold: list[Pair]

    def capped(self, limit: int) -> "BuccSplit":
        """A debug subset: the sentences of the first `limit` gold pairs plus the first `limit` other sentences of
        each side, in file order. Half of each side is then gold (about 3% in the full zh-en dev), so scores are
        not comparable with the full split's."""
        gold = self.gold[:limit]
        return BuccSplit(_capped_side(self.src, {src for src, _ in gold}, limit),
                         _capped_side(self.en, {en for _, en in gold}, limit), gold)


def _capped_side(side: Sentences, gold_ids: set[str], limit: int) -> Sentences:
    others = [sentence_id for sentence_id in side.ids if sentence_id not in gold_ids][:limit]
    return side.subset(gold_ids | set(others))


def _file_error(path: Path, line: int, message: str) -> XstiltsInputError:
    return XstiltsInputError(f"{path}:{line}: {message}")


def read_bucc_sentences(path: Path, lang: str) -> Sentences:
    """A BUCC sentence file: lines `<lang>-<id><TAB><sentence>`.

    Raises:
        XstiltsInputError: naming file and line: not exactly two tab-separated fields, an id without the `<lang>-`
            prefix, an empty sentence, an id seen before; or the file is missing or empty.
    """
    ids, texts, first_line = [], [], {}
    for line_number, line in enumerate(_read_lines(Path(path)), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise _file_error(path, line_number, f"expected `{lang}-<id><TAB><sentence>`, got {len(fields)} "
                                                 "tab-separated field(s)")
        sentence_id, text = fields
        if not sentence_id.startswith(f"{lang}-"):
            raise _file_error(path, line_number, f"id {sentence_id!r} does not start with '{lang}-'")
        if not text.strip():
            raise _file_error(path, line_number, f"empty sentence for id {sentence_id!r}")
        if sentence_id in first_line:
            raise _file_error(path, line_number, f"id {sentence_id!r} already on line {first_line[sentence_id]}")
        first_line[sentence_id] = line_number
        ids.append(sentence_id)
        texts.append(text)
    if not ids:
        raise XstiltsInputError(f"{path}: empty file; expected lines `{lang}-<id><TAB><sentence>`")
    return Sentences(ids, texts)


def read_bucc_gold(path: Path, src_ids: Collection[str], en_ids: Collection[str]) -> list[Pair]:
    """A BUCC gold file: lines `<lang>-<id><TAB>en-<id>`, in file order, each id one of its sentence file's.

    Raises:
        XstiltsInputError: naming file and line: not exactly two tab-separated fields, or an id absent from its
            sentence file; or the file is missing or has no pair.
    """
    gold = []
    for line_number, line in enumerate(_read_lines(Path(path)), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise _file_error(path, line_number, f"expected `<source id><TAB><English id>`, got {len(fields)} "
                                                 "tab-separated field(s)")
        for sentence_id, known, side in zip(fields, (src_ids, en_ids), ("source", "English")):
            if sentence_id not in known:
                raise _file_error(path, line_number, f"{side} id {sentence_id!r} is not in the {side} sentence file")
        gold.append((fields[0], fields[1]))
    if not gold:
        raise XstiltsInputError(f"{path}: no gold pairs; the dev gold sets the BUCC threshold")
    return gold


def read_bucc_split(lang: str, split: str, root: Path | None = None) -> BuccSplit:
    """Both sentence files of a BUCC split and, unless the benchmark withholds them (test), its gold pairs."""
    src_path, en_path, gold_path = task_paths("bucc2018", split, lang, root)
    src, en = read_bucc_sentences(src_path, lang), read_bucc_sentences(en_path, "en")
    # A test gold file, should one be present, is never read: XTREME withholds BUCC test gold.
    labeled = split not in get_task("bucc2018").withheld_label_splits
    return BuccSplit(src, en, read_bucc_gold(gold_path, set(src.ids), set(en.ids)) if labeled else [])


def mine_bucc_candidates(split: BuccSplit, embed_texts: Callable[[list[str]], np.ndarray]) -> dict[Pair, float]:
    """Ratio-margin candidate pairs of a BUCC split, as the official pipeline mines them: each distinct text once
    (`Sentences.unified`), then the candidates of repeated texts dropped.

    Args:
        embed_texts: texts -> one embedding row per text.
    """
    src, src_repeated = split.src.unified()
    en, en_repeated = split.en.unified()
    candidates = mine_bitext_candidates(embed_texts(src.texts), embed_texts(en.texts), src.ids, en.ids)
    return {pair: score for pair, score in candidates.items()
            if pair[0] not in src_repeated and pair[1] not in en_repeated}


# Metrics always come from dev, the split whose gold also picks the threshold (see `evaluate_bucc`).
BUCC_IN_SAMPLE = "in-sample: F1 on the dev gold that the threshold was tuned on"


def evaluate_bucc(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, lang: str, limit: int | None = None,
    root: Path | None = None, **embed_options,
) -> RetrievalResult:
    """BUCC `lang`-en: candidates mined on dev, the threshold that maximises dev F1, and F1 of the pairs it keeps.

    Metrics always come from dev, the one split with gold: XTREME withholds BUCC test gold. Where the test sentence
    files exist, the dev threshold is applied to the pairs mined on test: the test prediction file holds those
    (unscored) and the dev file the dev ones. Otherwise (the bundle) only the dev file is written, scored with a
    threshold optimised on the same split, which is optimistic. `notes["threshold_source"]` says which. The files
    count a split's items as its source-language sentences (`PredictionFile`).

    Args:
        limit: a debug cap (`BuccSplit.capped`).
        root: the data root; defaults to `settings.data_root()`.
        **embed_options: `layer`, `pooling`, `prefix`, `batch_size`, `max_length` of `embed`.
    """
    def embed_texts(texts: list[str]) -> np.ndarray:
        return embed(model, tokenizer, texts, **embed_options)

    whole_dev = read_bucc_split(lang, "dev", root)
    dev = _capped(whole_dev, limit)
    candidates = mine_bucc_candidates(dev, embed_texts)
    threshold = bucc_optimize_threshold(candidates, dev.gold)
    predicted = bucc_extract(candidates, threshold)
    dev_file = _bucc_prediction_file(lang, "dev", whole_dev, dev, predicted)
    test_file, threshold_source = _bucc_test_predictions(lang, threshold, embed_texts, limit, root)
    return RetrievalResult(
        metrics=bucc_f1(dev.gold, predicted), n_examples=len(set(dev.gold)),
        predictions=(dev_file,) if test_file is None else (test_file, dev_file),
        details={"threshold": threshold, "candidates": len(candidates), "predicted": len(predicted)},
        notes={"eval_split": "dev", "threshold_source": threshold_source, "optimistic": BUCC_IN_SAMPLE},
    )


def _capped(split: BuccSplit, limit: int | None) -> BuccSplit:
    return split.capped(limit) if limit else split


def _bucc_test_predictions(
    lang: str, threshold: float, embed_texts: Callable[[list[str]], np.ndarray], limit: int | None,
    root: Path | None,
) -> tuple[PredictionFile | None, str]:
    """The test prediction file where test sentence files exist (None elsewhere), and the threshold's source."""
    if not any(path.is_file() for path in task_paths("bucc2018", "test", lang, root)[:2]):
        return None, "dev (optimistic: same split; no test sentence files, so no test predictions)"
    whole_test = read_bucc_split(lang, "test", root)
    test = _capped(whole_test, limit)
    predicted = bucc_extract(mine_bucc_candidates(test, embed_texts), threshold)
    return (_bucc_prediction_file(lang, "test", whole_test, test, predicted),
            "dev, applied to test (test gold withheld: test file unscored, dev file scored)")


def _bucc_prediction_file(lang: str, split: str, whole: BuccSplit, scored: BuccSplit,
                          pairs: list[Pair]) -> PredictionFile:
    """`<src id>\t<en id>` lines; the items are the source-language sentences mined (all, or those of a cap). A
    split with gold (dev) gets its table too (`_bucc_table`)."""
    kept = set(scored.src.ids)
    indices = tuple(index for index, sentence_id in enumerate(whole.src.ids) if sentence_id in kept)
    return prediction_file(lang, split, "tsv", "".join(f"{src}\t{en}\n" for src, en in pairs), indices,
                           len(whole.src.ids), _bucc_table(whole, scored, pairs) if scored.gold else None)


def _bucc_table(whole: BuccSplit, scored: BuccSplit, pairs: list[Pair]) -> dict[str, list]:
    """The rows F1 scores: each source sentence in a gold or a kept pair, in file order, with its gold and kept
    English partners (`components.predictions.retrieval_table`)."""
    en_texts = dict(zip(scored.en.ids, scored.en.texts))
    gold, found = {}, {}
    for partners, source_pairs in ((gold, scored.gold), (found, pairs)):
        for src, en in source_pairs:
            partners.setdefault(src, {})[en] = en_texts[en]
    rows = [(index, sentence_id, text) for index, (sentence_id, text) in enumerate(zip(whole.src.ids, whole.src.texts))
            if sentence_id in gold or sentence_id in found]
    return retrieval_table([index for index, _, _ in rows], [text for _, _, text in rows],
                           [gold.get(sentence_id, {}) for _, sentence_id, _ in rows],
                           [found.get(sentence_id, {}) for _, sentence_id, _ in rows])


@dataclass(frozen=True)
class RetrievalTask:
    """How `evaluate` runs a retrieval task: the split it scores (whose files must exist) and its evaluator."""

    scored_split: str
    evaluate: Callable[..., RetrievalResult]


RETRIEVAL_TASKS = {
    "tatoeba": RetrievalTask("test", evaluate_tatoeba),
    "bucc2018": RetrievalTask("dev", evaluate_bucc),
}


def check_files(task: str, langs: list[str], root: Path | None = None) -> None:
    """Raises one `XstiltsInputError` listing every missing file of the split `task` scores in `langs`, before any
    embedding work starts."""
    split = RETRIEVAL_TASKS[task].scored_split
    missing = [str(path) for lang in langs for path in task_paths(task, split, lang, root) if not path.is_file()]
    if missing:
        raise XstiltsInputError(
            f"missing data file(s): {', '.join(missing)} (data root {root or settings.data_root()}; set "
            f"{settings.DATA_ROOT_ENV} to change it, or choose languages with langs)"
        )

"""Sentence retrieval straight from an encoder: pooled embeddings, cosine nearest neighbours, Tatoeba accuracy.

Tatoeba gets no task training (jiant's UNTRAINED_TASKS): the encoder, pretrained or after intermediate-task
training, embeds both sides and each English sentence retrieves its translation. Layer and pooling differ across
the reference implementations (../shared/docs/benchmarks.md §4.3), so both are parameters for callers to log.
"""

from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from components import settings
from components.errors import XstiltsInputError
from components.tasks import get_task

POOLINGS = ("mean", "cls")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pools `[batch, tokens, hidden]` states to `[batch, hidden]`: the mask-weighted mean, or the first token."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _check_embedding_options(model: PreTrainedModel, layer: int, pooling: str, batch_size: int) -> None:
    if batch_size < 1:
        raise XstiltsInputError(f"batch_size must be a positive number of texts, got {batch_size}")
    if pooling not in POOLINGS:
        raise XstiltsInputError(f"unknown pooling {pooling!r}; expected one of: {', '.join(POOLINGS)}")
    n_states = model.config.num_hidden_layers + 1
    if not -n_states <= layer < n_states:
        raise XstiltsInputError(
            f"layer {layer} is out of range: the model has {n_states} hidden states "
            f"(0 = embeddings, {n_states - 1} or -1 = last layer)"
        )


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
    _check_embedding_options(model, layer, pooling, batch_size)
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


def retrieval_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, src_texts: list[str], en_texts: list[str],
    **embed_options,
) -> float:
    """Tatoeba accuracy of an encoder on aligned pairs (`src_texts[i]` translates `en_texts[i]`).

    Direction as in XTREME's `similarity_search(x=src, y=tgt)`: the non-English side is the index and each English
    sentence queries it, top-1 by cosine.

    Args:
        **embed_options: `layer`, `pooling`, `prefix`, `batch_size`, `max_length` of `embed`.
    """
    src = embed(model, tokenizer, src_texts, **embed_options)
    en = embed(model, tokenizer, en_texts, **embed_options)
    return tatoeba_accuracy(nearest_neighbour(queries=en, candidates=src))


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
    with open(path, encoding="utf-8", newline="\n") as handle:
        return [line.rstrip("\r\n") for line in handle]


def tatoeba_paths(lang: str, root: Path | None = None) -> tuple[Path, Path]:
    """The (non-English, English) Tatoeba files of `lang` under the data root, from the task registry."""
    spec = get_task("tatoeba")
    spec.check_lang(lang)
    src_pattern, en_pattern = spec.files["test"]
    base = Path(root) if root else settings.data_root()
    return base / src_pattern.format(lang=lang), base / en_pattern.format(lang=lang)


def tatoeba_pairs(lang: str, limit: int | None = None, root: Path | None = None) -> tuple[list[str], list[str]]:
    """The (non-English, English) sentence lists of Tatoeba `lang`-en."""
    return read_aligned_pairs(*tatoeba_paths(lang, root), limit=limit)

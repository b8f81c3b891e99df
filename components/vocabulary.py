"""Vocabulary trimming: training holds only the word-embedding rows of the tokens its data uses.

The offline encoder's 250k-token vocabulary is 96M of its 118M parameters, while one run's training and selection
data use some thousands of tokens. With `trim_vocabulary`, `components.training.train` keeps those rows (and the
special tokens') while it trains, feeding the model token ids renumbered into the kept rows, and writes the rows back
into the full matrix when training ends: the `model/` artifact is an ordinary model that scores every language.

Rows of tokens the data does not use get no gradient, so trimming changes no prediction on the training data; the
one difference is that AdamW's weight decay, with trainable word embeddings, no longer shrinks the unused rows
(a relative change of about lr x weight decay per step).
"""

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

UNUSED = -1


def _token_ids(value) -> Iterable[int]:
    """The ids of one `input_ids` value: a sequence, or one sequence per choice (multiple choice)."""
    if value and isinstance(value[0], list):
        for sequence in value:
            yield from sequence
    else:
        yield from value


def _renumbered(value, new_ids: np.ndarray):
    if value and isinstance(value[0], list):
        return [_renumbered(sequence, new_ids) for sequence in value]
    return new_ids[np.asarray(value, dtype=np.int64)].tolist()


def _is_token_ids(key: str) -> bool:
    return key.endswith("input_ids")  # dual encoders carry the answer side's as `answer_input_ids`


@dataclass(frozen=True)
class TrimmedVocabulary:
    """The kept token ids (ascending) and, for every id of the full vocabulary, its row in the trimmed matrix."""

    kept_ids: np.ndarray
    new_ids: np.ndarray  # full id -> trimmed row; UNUSED for dropped ids

    @classmethod
    def of(cls, feature_sets: Iterable[Sequence[dict]], special_ids: Iterable[int], pad_id: int, vocab_size: int
           ) -> "TrimmedVocabulary":
        """The tokens of every feature set and the special tokens. Every id up to the padding id is kept too, so that
        padding keeps its id: the collators pad with the tokenizer's."""
        used = {*special_ids, *range(pad_id + 1)}
        for features in feature_sets:
            for feature in features:
                for key, value in feature.items():
                    if _is_token_ids(key):
                        used.update(_token_ids(value))
        kept_ids = np.array(sorted(used), dtype=np.int64)
        if kept_ids.size and (kept_ids[0] < 0 or kept_ids[-1] >= vocab_size):
            raise ValueError(f"token ids outside the model's vocabulary of {vocab_size}: "
                             f"{kept_ids[0]}..{kept_ids[-1]}")
        new_ids = np.full(vocab_size, UNUSED, dtype=np.int64)
        new_ids[kept_ids] = np.arange(kept_ids.size)
        return cls(kept_ids, new_ids)

    def renumber(self, features: Sequence[dict]) -> list[dict]:
        """Copies of `features` whose token ids index the trimmed matrix."""
        return [{key: _renumbered(value, self.new_ids) if _is_token_ids(key) else value
                 for key, value in feature.items()} for feature in features]

    def shrink(self, model: torch.nn.Module) -> torch.nn.Embedding:
        """Gives `model` the kept rows as its word embeddings (trainable as before); returns the full embedding."""
        full = model.get_input_embeddings()
        trimmed = torch.nn.Embedding(self.kept_ids.size, full.embedding_dim, padding_idx=full.padding_idx,
                                     device=full.weight.device, dtype=full.weight.dtype)
        with torch.no_grad():
            trimmed.weight.copy_(full.weight[torch.from_numpy(self.kept_ids).to(full.weight.device)])
        trimmed.weight.requires_grad_(full.weight.requires_grad)
        model.set_input_embeddings(trimmed)
        return full

    def restore(self, model: torch.nn.Module, full: torch.nn.Embedding) -> None:
        """Writes the (trained) kept rows back into `full` and gives it back to `model`."""
        trimmed = model.get_input_embeddings()
        with torch.no_grad():
            full.weight[torch.from_numpy(self.kept_ids).to(full.weight.device)] = trimmed.weight.to(full.weight.device)
        full.weight.requires_grad_(trimmed.weight.requires_grad)
        model.set_input_embeddings(full)

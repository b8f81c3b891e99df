"""Dual-encoder retrieval trained on English pairs (LAReQA, Mewsli-X): the model, ranking and zero-shot scoring.

XTREME-R's baselines for both tasks (third_party/run_retrieval_qa.py, run_retrieval_el.py) encode queries and
candidates with one shared encoder, L2-normalise the pooled embeddings and train with a softmax over the in-batch
candidates (cosine similarity times a fixed scale of 100, i.e. temperature 0.01). Pooling here is the mean over the last
layer's tokens, the default of every registered encoder, where XTREME's BERT baseline used its pooler output.

Scoring ranks the whole candidate pool for every query by cosine similarity and reads mAP@20 off the top 20
(`components.metrics.map_at_k`, XTREME's `utils_lareqa.mean_avg_prec_at_k`). The relevant candidates of a query are the
answers of every query sharing its id across the loaded languages: for LAReQA the answer sentence in each of the 11
languages (XTREME's `by_xling_id`), for Mewsli-X the gold entity (AP@20 is then its reciprocal rank, as
`mewslix_map_at_20` computes it).
"""

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from transformers import AutoModel, DataCollatorWithPadding

from components.data import Example, candidate_pool, load_split
from components.errors import XstiltsInputError
from components.metrics import map_at_k
from components.predictions import prediction_file, retrieval_table
from components.retrieval import RetrievalResult, pool
from components.tasks import TaskSpec

LOGIT_SCALE = 100.0  # XTREME's BertForSequenceRetrieval: cosine similarity * 100 before the in-batch softmax
POOLING = "mean"
CUTOFF = 20  # XTREME-R scores LAReQA and Mewsli-X at the top 20 (mAP@20)
ANSWER_PREFIX = "answer_"  # feature keys of the candidate side; the query side uses the model's own names


class DualEncoder(torch.nn.Module):
    """One shared encoder for queries and candidates; `forward` returns the in-batch softmax loss and the embeddings.

    Loads and saves as the bare encoder (`AutoModel`): the dual encoder adds no weights, so its `model/` artifact is an
    ordinary Hugging Face folder that any phase can load.
    """

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, **kwargs) -> "DualEncoder":
        return cls(AutoModel.from_pretrained(path_or_hub_id, **kwargs))

    def save_pretrained(self, directory) -> None:
        self.encoder.save_pretrained(directory)

    @property
    def base_model(self) -> torch.nn.Module:
        """The encoder, which the intermediate phase hands on (as `encoder_of` does for models with a head)."""
        return self.encoder

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, embeddings: torch.nn.Module) -> None:
        self.encoder.set_input_embeddings(embeddings)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden, attention_mask, POOLING), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, answer_input_ids: torch.Tensor,
                answer_attention_mask: torch.Tensor, return_loss: bool = True) -> dict[str, torch.Tensor]:
        """Row i's answer is the correct candidate of query i and every other row's answer a negative.

        `return_loss=True` in the signature tells the Trainer that the model computes its loss without labels, so the
        selection pass also reports it; the embeddings are what the selection metric ranks.
        """
        queries = self.embed(input_ids, attention_mask)
        answers = self.embed(answer_input_ids, answer_attention_mask)
        output = {"query_embeddings": queries, "answer_embeddings": answers}
        if return_loss:
            logits = LOGIT_SCALE * queries @ answers.T
            output["loss"] = torch.nn.functional.cross_entropy(logits, torch.arange(len(queries), device=logits.device))
        return output


def encode_pairs(examples: Sequence[Example], tokenizer, max_length: int) -> list[dict]:
    """Query and answer token ids per training pair; the answer's under `answer_`-prefixed keys."""
    queries = tokenizer([example["query"] for example in examples], truncation=True, max_length=max_length)
    answers = tokenizer([example["answer"] for example in examples], truncation=True, max_length=max_length)
    return [{"input_ids": query_ids, "attention_mask": query_mask,
             f"{ANSWER_PREFIX}input_ids": answer_ids, f"{ANSWER_PREFIX}attention_mask": answer_mask}
            for query_ids, query_mask, answer_ids, answer_mask in zip(
                queries["input_ids"], queries["attention_mask"], answers["input_ids"], answers["attention_mask"])]


def pair_collator(tokenizer) -> Callable[[list[dict]], dict]:
    """Pads the query and the answer side of a batch separately, each to its own longest sequence."""
    padder = DataCollatorWithPadding(tokenizer)

    def collate(features: list[dict]) -> dict:
        queries = padder([{key: feature[key] for key in ("input_ids", "attention_mask")} for feature in features])
        answers = padder([{key: feature[ANSWER_PREFIX + key] for key in ("input_ids", "attention_mask")}
                          for feature in features])
        return {**queries, **{ANSWER_PREFIX + key: value for key, value in answers.items()}}

    return collate


def top_candidates(queries: np.ndarray, candidates: np.ndarray, k: int = CUTOFF, block: int = 1024) -> np.ndarray:
    """The indices of each query's k most cosine-similar candidates, best first (ties: lower index first)."""
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    candidates = candidates / np.linalg.norm(candidates, axis=1, keepdims=True).clip(min=1e-12)
    k = min(k, len(candidates))
    rows = []
    for start in range(0, len(queries), block):  # blocks bound the memory of the similarity matrix
        similarity = queries[start:start + block] @ candidates.T
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        order = np.lexsort((top, -np.take_along_axis(similarity, top, axis=1)), axis=1)
        rows.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(rows)


def selection_map(query_embeddings: np.ndarray, answer_embeddings: np.ndarray, answer_ids: Sequence[str]
                  ) -> dict[str, float]:
    """mAP@20 on English selection pairs: each query ranks the distinct answers of the selection set (one embedding
    per answer id), its own being the relevant one."""
    first_row: dict[str, int] = {}
    for row, answer_id in enumerate(answer_ids):
        first_row.setdefault(answer_id, row)
    pool_ids = list(first_row)
    ranked = top_candidates(query_embeddings, answer_embeddings[[first_row[i] for i in pool_ids]])
    return map_at_k({str(row): [pool_ids[index] for index in indices] for row, indices in enumerate(ranked)},
                    {str(row): [answer_id] for row, answer_id in enumerate(answer_ids)}, k=CUTOFF)


@dataclass(frozen=True)
class RetrievalData:
    """What zero-shot scoring of a dual-encoder task reads.

    Attributes:
        queries: scored language -> its examples (`id`, `query`).
        relevant: query id -> the ids of its correct candidates, over every language of the task.
        candidates: (candidate id, text) pairs of the pool every query ranks.
        test_sizes: scored language -> the queries of its whole test split (`queries` may hold the first ones only).
    """

    queries: dict[str, list[Example]]
    relevant: dict[str, set[str]]
    candidates: list[tuple[str, str]]
    test_sizes: dict[str, int]


def load_retrieval_data(spec: TaskSpec, langs: Sequence[str], limit: int | None = None, root: Path | None = None
                        ) -> RetrievalData:
    """Test queries of `langs`, with the pool and the relevance built from every language of the task (a LAReQA
    question retrieves from all 11 languages' sentences, its answer in each being relevant).

    Args:
        limit: keep the first `limit` queries of each language (a debug cap; for LAReQA the pool shrinks with it).

    Raises:
        XstiltsInputError: a file is missing or malformed, a scored language has no query, or a language repeats a
            query id.
    """
    whole = {lang: load_split(spec, "test", lang, root) for lang in spec.langs}
    examples = {lang: lang_examples[:limit] for lang, lang_examples in whole.items()}
    empty = [lang for lang in langs if not examples[lang]]
    if empty:
        raise XstiltsInputError(f"{spec.name} test has no queries in {', '.join(empty)}; choose languages with langs")
    relevant: dict[str, set[str]] = {}
    for lang, lang_examples in examples.items():
        repeated = sorted(query_id for query_id, count in Counter(e["id"] for e in lang_examples).items() if count > 1)
        if repeated:
            raise XstiltsInputError(f"{spec.name} test [{lang}] repeats query id(s) {', '.join(repeated[:5])}; "
                                    "predictions are keyed by query id")
        for example in lang_examples:
            relevant.setdefault(example["id"], set()).add(example["answer_id"])
    every_example = [example for lang_examples in examples.values() for example in lang_examples]
    return RetrievalData(queries={lang: examples[lang] for lang in langs}, relevant=relevant,
                         candidates=candidate_pool(spec, every_example, root),
                         test_sizes={lang: len(whole[lang]) for lang in langs})


def score(data: RetrievalData, embed_texts: Callable[[list[str]], np.ndarray]) -> dict[str, RetrievalResult]:
    """mAP@20 and the XTREME-layout prediction file ({query id: top-20 candidate ids}, JSON) of each scored language,
    with its table (each query, its relevant candidates and its top-1); the pool is embedded once.

    Args:
        embed_texts: texts -> one embedding row per text.
    """
    candidate_ids = [candidate_id for candidate_id, _ in data.candidates]
    candidate_texts = dict(data.candidates)
    candidates = embed_texts([text for _, text in data.candidates])
    results = {}
    for lang, examples in data.queries.items():
        ranked = top_candidates(embed_texts([example["query"] for example in examples]), candidates)
        predictions = {example["id"]: [candidate_ids[index] for index in row] for example, row in zip(examples, ranked)}
        metrics = map_at_k(predictions, {example["id"]: data.relevant[example["id"]] for example in examples},
                           k=CUTOFF)
        table = retrieval_table(range(len(examples)), [example["query"] for example in examples],
                                [{candidate_id: candidate_texts.get(candidate_id, "")
                                  for candidate_id in sorted(data.relevant[example["id"]])} for example in examples],
                                [{predictions[example["id"]][0]: candidate_texts[predictions[example["id"]][0]]}
                                 for example in examples])
        results[lang] = RetrievalResult(
            metrics=metrics, n_examples=len(examples),
            predictions=(prediction_file(lang, "test", "json", json.dumps(predictions, ensure_ascii=False),
                                         range(len(examples)), data.test_sizes[lang], table),),
            details={"candidates": len(candidate_ids)}, notes={"eval_split": "test"})
    return results

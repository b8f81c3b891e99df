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
from components.model_registry import (DEFAULT_MODEL, MODELS, ModelSpec, check_model,  # noqa: F401 (re-exported)
                                       hidden_state_count, max_input_length)

IGNORED_LABEL = -100  # the label position the models' cross-entropy loss skips (PyTorch's ignore_index)


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

"""MAD-X building blocks (Pfeiffer et al. 2020) on the Hugging Face models the task handlers already use.

`adapters.init(model)` retrofits an `AutoModelFor*` model, so the task handlers, their heads and the Trainer path of
full fine-tuning stay as they are. Language adapters are bottleneck adapters with an invertible adapter
(`seq_bn_inv`), trained by masked language modelling with the base model frozen; task adapters are bottleneck
adapters (`seq_bn`) trained with the task head, stacked on a frozen language adapter: `Stack(lang, task)`, language
first, because only the first adapter of a Stack applies its invertible adapter (adapters 1.3.0). Zero-shot
evaluation swaps the language adapter: `Stack(<target lang>, task)`.

Saved adapter folders hold the adapters library's files plus `xstilts-adapter.json` (kind, language or task,
reduction factor, hidden size, and a fingerprint of the base encoder's weights), so that an adapter is never loaded
into another base model. Heads are saved apart, without the base model's weights (an MLM decoder tied to the word
embeddings stays out), as `head.safetensors` with `xstilts-head.json`. No copy of the base model is ever written.
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import adapters
import torch
from adapters import SeqBnConfig, SeqBnInvConfig, Stack
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

from components.errors import XstiltsInputError
from components.options import LANG_ADAPTER, METHOD, option_defaults
from components.progress import show_progress
from components.models import IGNORED_LABEL, ResolvedModel, load_pretrained  # the MLM label of unmasked positions
from components.training import check_precision

LANG, TASK = "lang", "task"
ADAPTER_CONFIGS = {LANG: "seq_bn_inv", TASK: "seq_bn"}
_CONFIG_CLASSES = {LANG: SeqBnInvConfig, TASK: SeqBnConfig}
_LANG_ADAPTER_DEFAULTS = option_defaults(LANG_ADAPTER)  # the lang_adapter entry point's options
INFO_FILE = "xstilts-adapter.json"
HEAD_INFO_FILE = "xstilts-head.json"
HEAD_WEIGHTS_FILE = "head.safetensors"
# MAD-X's sizes: language adapters with bottleneck hidden/2 (384 on XLM-R Base), task adapters hidden/16.
DEFAULT_LANG_REDUCTION_FACTOR = _LANG_ADAPTER_DEFAULTS["lang_reduction_factor"]
DEFAULT_TASK_REDUCTION_FACTOR = option_defaults(METHOD)["task_reduction_factor"]


def lang_adapter_name(lang: str) -> str:
    return f"lang_{lang}"


def task_adapter_name(task: str) -> str:
    return f"task_{task}"


def bottleneck_size(hidden_size: int, reduction_factor: float, what: str) -> int:
    """The bottleneck width hidden_size / reduction_factor, which must be a whole number of at least 1.

    adapters itself truncates silently (384 / 5 -> 76), so that the logged reduction factor would not describe the
    adapter trained.
    """
    if not reduction_factor > 0:
        raise XstiltsInputError(f"{what} reduction factor must be positive, got {reduction_factor}")
    width = hidden_size / reduction_factor
    if width < 1 or not math.isclose(width, round(width), abs_tol=1e-9):
        valid = [factor for factor in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64) if hidden_size % factor == 0]
        raise XstiltsInputError(
            f"{what} reduction factor {reduction_factor} does not divide the hidden size {hidden_size} into a whole "
            f"bottleneck (got {width:g}); expected a divisor of {hidden_size}, e.g. {', '.join(map(str, valid))}"
        )
    return round(width)


def base_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the base encoder's weights, before any adapter is added.

    The pooler is left out: only some heads build it, and the same encoder must match under every head.
    """
    digest = hashlib.sha256()
    for name, parameter in sorted(model.base_model.named_parameters()):
        if not name.startswith("pooler."):
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter folder's `xstilts-adapter.json` records about it.

    Attributes:
        name: the adapter's name in a model (`lang_sw`, `task_panx`).
        kind: `lang` (MLM-trained, `seq_bn_inv`) or `task` (`seq_bn`).
        subject: the language of a language adapter, the task of a task adapter.
        base_model: the base model's registry name or folder, for messages; `base_fingerprint` decides.
    """

    name: str
    kind: str
    subject: str
    reduction_factor: float
    hidden_size: int
    base_model: str
    base_fingerprint: str
    config: str = ""

    def write(self, directory: Path) -> None:
        (Path(directory) / INFO_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> "AdapterInfo":
        path = Path(directory) / INFO_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise XstiltsInputError(f"{path}: missing; expected an adapter folder written by xstilts") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise XstiltsInputError(f"{path}: malformed adapter description ({error})") from None


class AdapterModel:
    """A Hugging Face model with `adapters.init` applied, which knows the base encoder its adapters must fit.

    Args:
        model: an `AutoModelFor*` (or masked-LM) model without adapters; modified in place.
        base_model: the base model's registry name or folder, recorded in saved adapters.
    """

    def __init__(self, model: torch.nn.Module, base_model: str):
        self.fingerprint = base_fingerprint(model)
        self.base_model = base_model
        adapters.init(model)
        self.model = model
        self.infos: dict[str, AdapterInfo] = {}

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def add(self, kind: str, name: str, subject: str, reduction_factor: float) -> AdapterInfo:
        """Adds a fresh adapter of `kind` (`lang` or `task`)."""
        bottleneck_size(self.hidden_size, reduction_factor, f"{kind} adapter")
        # A fresh config object per adapter: adapters keeps configs on the model, and sharing one leaks across models.
        self.model.add_adapter(name, config=_CONFIG_CLASSES[kind](reduction_factor=reduction_factor))
        info = AdapterInfo(name, kind, subject, reduction_factor, self.hidden_size, self.base_model, self.fingerprint,
                           ADAPTER_CONFIGS[kind])
        self.infos[name] = info
        return info

    def load(self, directory: Path, kind: str, load_as: str | None = None) -> AdapterInfo:
        """Loads an adapter folder saved by `save`, after checking that it was trained for this base model.

        Raises:
            XstiltsInputError: not an xstilts adapter folder, the wrong kind, or trained for another hidden size or
                another base encoder.
        """
        info = AdapterInfo.read(directory)
        if info.kind != kind:
            raise XstiltsInputError(f"{directory}: a {info.kind} adapter ({info.name}); expected a {kind} adapter")
        if info.hidden_size != self.hidden_size:
            raise XstiltsInputError(
                f"{directory}: adapter {info.name} was trained for hidden size {info.hidden_size} (base model "
                f"{info.base_model}); this model ({self.base_model}) has hidden size {self.hidden_size}")
        if info.base_fingerprint != self.fingerprint:
            raise XstiltsInputError(
                f"{directory}: adapter {info.name} was trained for another base encoder ({info.base_model}, weights "
                f"{info.base_fingerprint[:12]}); this model is {self.base_model} (weights {self.fingerprint[:12]}). "
                "Train the adapter for this encoder (lang_adapter -P init_run_id=... for a fine-tuned one)")
        name = load_as or info.name
        self.model.load_adapter(str(directory), load_as=name, with_head=False, use_safetensors=True)
        self.infos[name] = AdapterInfo(**{**asdict(info), "name": name})
        return self.infos[name]

    def save(self, name: str, directory: Path) -> None:
        """Writes adapter `name` (weights, the adapters library's config, and `xstilts-adapter.json`)."""
        self.model.save_adapter(str(directory), name, with_head=False, use_safetensors=True)
        self.infos[name].write(directory)

    def activate(self, task: str | None, lang: str | None = None) -> None:
        """Makes `Stack(lang, task)` (or the one that is given) the forward pass's adapters.

        The language adapter comes first: only the first adapter of a Stack applies its invertible adapter.
        """
        self.model.set_active_adapters(Stack(*(name for name in (lang, task) if name)))

    def train(self, trained: str, lang: str | None = None) -> None:
        """Freezes everything but adapter `trained` and the head, then activates `Stack(lang, trained)`.

        The order matters: `train_adapter` resets the active setup to the trained adapter alone.
        """
        self.model.train_adapter(trained)
        self.activate(trained, lang)

    def head_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The head's own parameters: everything outside the base model, without weights tied to it (an MLM decoder
        shares the word embeddings, which `named_parameters` lists once, under the base model)."""
        prefix = f"{self.model.base_model_prefix}."
        return {name: p for name, p in self.model.named_parameters() if not name.startswith(prefix)}

    def save_head(self, directory: Path, labels: Sequence[str] = ()) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({name: p.detach().contiguous() for name, p in self.head_parameters().items()},
                  str(directory / HEAD_WEIGHTS_FILE))
        (directory / HEAD_INFO_FILE).write_text(json.dumps(
            {"model_class": type(self.model).__name__, "labels": list(labels), "hidden_size": self.hidden_size},
            indent=1), encoding="utf-8")

    def load_head(self, directory: Path) -> None:
        """Loads a head saved by `save_head` into this model's head of the same class and shape.

        Raises:
            XstiltsInputError: no head there, or one of another class or shape.
        """
        path = Path(directory) / HEAD_WEIGHTS_FILE
        if not path.is_file():
            raise XstiltsInputError(f"{path}: missing; expected a head saved by xstilts")
        saved, own = load_file(str(path)), self.head_parameters()
        shapes = {name: tuple(tensor.shape) for name, tensor in saved.items()}
        if shapes != {name: tuple(p.shape) for name, p in own.items()}:
            raise XstiltsInputError(f"{path}: a head of {shapes} does not fit this model's head "
                                    f"({type(self.model).__name__}: {({n: tuple(p.shape) for n, p in own.items()})})")
        with torch.no_grad():
            for name, tensor in saved.items():
                own[name].copy_(tensor)


def read_head_labels(directory: Path) -> tuple[str, ...]:
    """The label set a saved task head predicts, in head order."""
    path = Path(directory) / HEAD_INFO_FILE
    try:
        return tuple(json.loads(path.read_text(encoding="utf-8"))["labels"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as error:
        raise XstiltsInputError(f"{path}: missing or malformed head description ({error})") from None


@dataclass(frozen=True)
class LangAdapterConfig:
    """Masked-language-model training of one language adapter. Names avoid the Trainer's own param names."""

    reduction_factor: float = _LANG_ADAPTER_DEFAULTS["lang_reduction_factor"]
    lr: float = _LANG_ADAPTER_DEFAULTS["lr"]
    max_steps: int = _LANG_ADAPTER_DEFAULTS["max_steps"]
    batch_size: int = _LANG_ADAPTER_DEFAULTS["batch_size"]
    max_length: int = _LANG_ADAPTER_DEFAULTS["max_length"]
    mlm_probability: float = 0.15
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = _LANG_ADAPTER_DEFAULTS["seed"]
    precision: str = _LANG_ADAPTER_DEFAULTS["precision"]

    def __post_init__(self):
        for name in ("lr", "max_steps", "batch_size", "max_length"):
            if getattr(self, name) <= 0:
                raise XstiltsInputError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.mlm_probability < 1:
            raise XstiltsInputError(f"mlm_probability must lie between 0 and 1, got {self.mlm_probability}")
        check_precision(self.precision)

    def as_params(self) -> dict[str, str]:
        params = {key: str(value) for key, value in asdict(self).items()}
        params["lang_reduction_factor"] = params.pop("reduction_factor")
        return params


class MaskedPositionsLM(torch.nn.Module):
    """Masked language modelling that computes the vocabulary logits at the masked positions only.

    With a 250k-piece vocabulary, logits at every position would dominate time and memory (a batch of 32 x 128 would
    need 4 GB); 15% of the positions carry a loss. Like MAD-X, the language adapter's invertible adapter is inverted
    before the output embeddings; the Hugging Face MLM head that `adapters.init` keeps does not do that itself.
    """

    def __init__(self, host: AdapterModel):
        super().__init__()
        self.host = host.model
        self.head = next(module for name, module in host.model.named_children()
                         if name != host.model.base_model_prefix)

    def forward(self, input_ids, attention_mask, labels):
        encoder = self.host.base_model
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        masked = labels != IGNORED_LABEL
        logits = self.head(encoder.invertible_adapters_forward(hidden, rev=True)[masked])
        # Summed, then divided by at least 1: a batch of very short texts can draw no masked position at all.
        loss = torch.nn.functional.cross_entropy(logits, labels[masked], reduction="sum") / masked.sum().clamp(min=1)
        return {"loss": loss}


@dataclass
class LangAdapterResult:
    model: torch.nn.Module  # the masked-LM model with the trained adapter
    info: AdapterInfo
    adapter_dir: Path
    head_dir: Path
    trainable_params: int
    total_params: int
    train_loss: float


def train_language_adapter(base: ResolvedModel, base_label: str, tokenizer, texts: Sequence[str], lang: str,
                           config: LangAdapterConfig, output_dir: Path, callbacks: Sequence = ()) -> LangAdapterResult:
    """Trains the language adapter of `lang` (with a fresh MLM head where the base model has none) on `texts`.

    Writes `<output_dir>/adapter` and `<output_dir>/head`; the base model is frozen and never written.

    Args:
        base_label: how the saved adapter names its base model (e.g. the registry name).
    """
    torch.manual_seed(config.seed)
    host = AdapterModel(load_pretrained(AutoModelForMaskedLM, base), base_label)
    name = lang_adapter_name(lang)
    info = host.add(LANG, name, lang, config.reduction_factor)
    host.train(name)
    encoded = tokenizer(list(texts), truncation=True, max_length=config.max_length, return_special_tokens_mask=True)
    features = [dict(zip(encoded.keys(), values)) for values in zip(*encoded.values())]
    trainer = show_progress(Trainer(
        model=MaskedPositionsLM(host),
        args=_mlm_arguments(config, output_dir / "trainer"),
        train_dataset=features,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability),
        callbacks=list(callbacks),
    ), f"language adapter {lang}")
    outcome = trainer.train()
    adapter_dir, head_dir = output_dir / "adapter", output_dir / "head"
    host.save(name, adapter_dir)
    host.save_head(head_dir)
    return LangAdapterResult(host.model, info, adapter_dir, head_dir, count_parameters(host.model, trainable=True),
                             count_parameters(host.model), outcome.training_loss)


def count_parameters(model: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def _mlm_arguments(config: LangAdapterConfig, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=config.lr,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        seed=config.seed,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        save_strategy="no",  # only the adapter and head are kept, written once at the end
        group_by_length=True,
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
    )


class TaskAdapterTraining:
    """The `setup_model` of `components.training.train` for adapter methods, and what the run hands on afterwards.

    The loaded task model gets the frozen language adapter (when given), a task adapter (fresh, or continuing an
    intermediate-task adapter) and trains that adapter and the head on `Stack(lang, task)`; the base model stays frozen.

    Args:
        task: the task trained (names the adapter `task_<task>`).
        base_model: the base model's registry name or folder, recorded in the saved adapter.
        reduction_factor: the task adapter's; a continued adapter must have been trained with the same.
        lang_adapter_dir: a language adapter folder (the training language's), or None (method task_adapter).
        init_task_adapter_dir: an intermediate-task adapter folder to continue, or None (a fresh adapter).
    """

    def __init__(self, task: str, base_model: str, reduction_factor: float, lang_adapter_dir: Path | None = None,
                 init_task_adapter_dir: Path | None = None):
        self.task, self.base_model, self.reduction_factor = task, base_model, reduction_factor
        self.lang_adapter_dir, self.init_task_adapter_dir = lang_adapter_dir, init_task_adapter_dir
        self.adapter_name = task_adapter_name(task)
        self.host: AdapterModel | None = None
        self.lang_info: AdapterInfo | None = None

    def __call__(self, model: torch.nn.Module) -> None:
        self.host = AdapterModel(model, self.base_model)
        self.lang_info = self.host.load(self.lang_adapter_dir, LANG) if self.lang_adapter_dir else None
        if self.init_task_adapter_dir:
            continued = self.host.load(self.init_task_adapter_dir, TASK, load_as=self.adapter_name)
            if continued.reduction_factor != self.reduction_factor:
                raise XstiltsInputError(
                    f"the intermediate-task adapter ({continued.subject}) has reduction factor "
                    f"{continued.reduction_factor:g}; continuing it needs the same task reduction factor, got "
                    f"{self.reduction_factor:g}")
            self.host.infos[self.adapter_name] = replace(continued, subject=self.task)
        else:
            self.host.add(TASK, self.adapter_name, self.task, self.reduction_factor)
        self.host.train(self.adapter_name, self.lang_info.name if self.lang_info else None)

    def save(self, adapter_dir: Path, head_dir: Path, labels: Sequence[str]) -> None:
        """Writes the task adapter and the head (with its label set); the language adapter stays where it came from."""
        self.host.save(self.adapter_name, adapter_dir)
        self.host.save_head(head_dir, labels)


def load_task_adapter_model(model: torch.nn.Module, base_model: str, adapter_dir: Path, head_dir: Path,
                            labels: Sequence[str]) -> tuple[AdapterModel, str]:
    """A freshly loaded task model with a saved task adapter and head; returns it and the adapter's name.

    Raises:
        XstiltsInputError: the adapter or head does not fit the model, or the head predicts another label set.
    """
    saved_labels = read_head_labels(head_dir)
    if tuple(saved_labels) != tuple(labels):
        raise XstiltsInputError(f"{head_dir}: the head predicts {list(saved_labels)}; the task has {list(labels)}")
    host = AdapterModel(model, base_model)
    name = host.load(adapter_dir, TASK).name
    host.load_head(head_dir)
    host.activate(name)
    return host, name

"""Fine-tuning with the Hugging Face Trainer, and the zero-shot selection rule.

The rule lives here and only here: checkpoints are selected (and training stops early) on dev examples in the
training language alone. For target tasks that language is English; no target-language dev item is ever read
for selection.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from components.data import Example, TrainingData
from components.errors import XstiltsInputError
from components.models import ResolvedModel, load_pretrained
from components.options import PRECISIONS, TRAINING, option_defaults
from components.progress import banner, show_progress
from components.tasks import TaskSpec, TaskType, get_task
from components.task_types import handler_for
from components.vocabulary import TrimmedVocabulary


_DEFAULTS = option_defaults(TRAINING)


def check_precision(precision: str) -> None:
    """Autocast precisions that can run here: fp16 needs CUDA (bf16 runs on every CPU, natively on newer ones)."""
    if precision not in PRECISIONS:
        raise XstiltsInputError(f"unknown precision '{precision}': expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and not torch.cuda.is_available():
        raise XstiltsInputError("precision fp16 needs a CUDA GPU (none is visible); use bf16 or fp32 on CPU")


def check_trained_task(spec: TaskSpec, phase: str) -> None:
    """Raises for a task that is scored straight from an encoder (Tatoeba, BUCC): it has no training data."""
    if spec.train_sources is None:
        raise XstiltsInputError(
            f"task {spec.name!r} ({spec.task_type.value}) is evaluated without task training, so the {phase} phase "
            f"cannot train on it: the evaluate entry point scores an encoder on it (retrieval_task={spec.name}, with "
            "encoder_run_id=<an intermediate or target run> or encoder_model=<a model>)")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one fine-tuning run. Names avoid the Trainer's own param names on purpose; the defaults are
    the training options' (`components.options`), so the CLI, the MLproject and a `TrainConfig()` agree."""

    lr: float = _DEFAULTS["lr"]
    epochs: float = _DEFAULTS["epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    max_length: int = _DEFAULTS["max_length"]
    warmup_ratio: float = _DEFAULTS["warmup_ratio"]
    weight_decay: float = 0.01
    seed: int = _DEFAULTS["seed"]
    max_train_examples: int = _DEFAULTS["max_train_examples"]
    max_select_examples: int = _DEFAULTS["max_select_examples"]
    early_stopping_patience: int = _DEFAULTS["early_stopping_patience"]
    freeze_word_embeddings: bool = _DEFAULTS["freeze_word_embeddings"]
    # The GPU path: autocast precision, torch's fused AdamW kernel, gradient accumulation, torch.compile.
    precision: str = _DEFAULTS["precision"]
    fused_adamw: bool = _DEFAULTS["fused_adamw"]
    accumulation_steps: int = _DEFAULTS["accumulation_steps"]
    compile_model: bool = _DEFAULTS["compile_model"]
    # Train on the word-embedding rows of the tokens the data uses only (components/vocabulary.py); full fine-tuning.
    trim_vocabulary: bool = _DEFAULTS["trim_vocabulary"]
    # Selection evaluations per epoch: more than one gives early stopping and tuning's pruner points inside an epoch.
    evals_per_epoch: int = _DEFAULTS["evals_per_epoch"]

    def __post_init__(self):
        for name in ("lr", "epochs", "batch_size", "max_length", "accumulation_steps", "evals_per_epoch"):
            if getattr(self, name) <= 0:
                raise XstiltsInputError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_train_examples", "max_select_examples", "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise XstiltsInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_precision(self.precision)

    def as_params(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}

    def train_subset(self, examples: Sequence[Example]) -> Sequence[Example]:
        """The examples a run trains on: the first `max_train_examples` (all when 0)."""
        return examples[: self.max_train_examples] if self.max_train_examples else examples

    def select_subset(self, examples: Sequence[Example]) -> Sequence[Example]:
        """The English selection examples a run scores: the first `max_select_examples` (all when 0)."""
        return examples[: self.max_select_examples] if self.max_select_examples else examples


@dataclass
class TrainResult:
    model: torch.nn.Module
    labels: tuple[str, ...]
    select_metrics: dict[str, float]
    trainable_params: int
    total_params: int


def check_selection_language(select: Sequence[Example], train_lang: str) -> None:
    """The zero-shot rule: selection examples must all be in the training language."""
    other = sorted({example["lang"] for example in select} - {train_lang})
    if other:
        raise XstiltsInputError(
            f"selection data in {', '.join(other)}: checkpoints may only be selected on {train_lang} dev data"
        )


def freeze_word_embeddings(model: torch.nn.Module) -> None:
    model.get_input_embeddings().weight.requires_grad_(False)


def train(spec: TaskSpec, init: ResolvedModel, tokenizer, stages: Sequence[TrainingData], train_lang: str,
          config: TrainConfig, output_dir: Path, callbacks_for: Callable[[TrainingData], Sequence] = lambda _: (),
          setup_model: Callable[[torch.nn.Module], None] | None = None) -> TrainResult:
    """Fine-tunes `init` (with a fresh head) through `stages` in order, keeping the best selection epoch of each.

    Args:
        callbacks_for: the Trainer callbacks of one stage (e.g. metric logging keyed by the stage's task).
        setup_model: adapter methods: called on the loaded model to freeze its encoder and add and activate its
            adapters (`components.adapters.TaskAdapterTraining`); None = full fine-tuning.
    """
    handler = handler_for(spec)
    for stage in stages:
        check_selection_language(stage.select, train_lang)
        check_selection_language(stage.train, train_lang)
        if get_task(stage.task).task_type is not spec.task_type:
            raise XstiltsInputError(f"stage task {stage.task} is not of {spec.name}'s type {spec.task_type.value}")
    if config.trim_vocabulary and setup_model:
        raise XstiltsInputError("trim_vocabulary is for full fine-tuning: adapter methods train no word embeddings")
    labels = spec.labels
    for stage in stages:
        banner(f"tokenizing {stage.task}: {len(config.train_subset(stage.train)):,} training and "
               f"{len(config.select_subset(stage.select)):,} selection items, max length {config.max_length}")
    encoded = [StageFeatures.encode(handler, tokenizer, stage, config, labels) for stage in stages]
    torch.manual_seed(config.seed)
    banner(f"loading {init.name} with a fresh {spec.name} head")
    model = load_task_model(spec, init)
    if setup_model:
        setup_model(model)
    elif config.freeze_word_embeddings:
        freeze_word_embeddings(model)
    if config.trim_vocabulary:
        vocabulary = TrimmedVocabulary.of([features for stage in encoded for features in (stage.train, stage.select)],
                                          tokenizer.all_special_ids, tokenizer.pad_token_id,
                                          model.get_input_embeddings().num_embeddings)
        encoded = [stage.renumbered(vocabulary) for stage in encoded]
        full_embeddings = vocabulary.shrink(model)
    for number, (stage, features) in enumerate(zip(stages, encoded), start=1):
        trainer = show_progress(_stage_trainer(spec, handler, model, tokenizer, features, config,
                                               output_dir / f"stage{number}", callbacks_for(stage)), stage.task)
        trainer.train()
        model = trainer.model  # load_best_model_at_end has restored the stage's best epoch
    if config.trim_vocabulary:
        vocabulary.restore(model, full_embeddings)
    return TrainResult(
        model=model, labels=labels,
        select_metrics={spec.headline_metric: trainer.state.best_metric},  # the last stage selects on spec's dev
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in model.parameters()),
    )


def load_task_model(spec: TaskSpec, init: ResolvedModel) -> torch.nn.Module:
    """`init`'s encoder under a fresh head for `spec`."""
    labels = spec.labels
    # Multiple choice has no label set: its head scores each choice.
    label_maps = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {label: index for index, label in enumerate(labels)}} if labels else {}
    if spec.task_type is TaskType.EXTRACTIVE_QA:  # start and end logits, whatever an intermediate run's labels were
        label_maps = {"num_labels": 2}
    return load_pretrained(handler_for(spec).auto_model, init, ignore_mismatched_sizes=True, **label_maps)


class OrderedEvaluationTrainer(Trainer):
    """Length-grouped training batches, but evaluation in feature order: QA selection maps each prediction back to
    its window by position, and transformers 4.57 length-groups (and shuffles) evaluation batches too."""

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset)


@dataclass(frozen=True)
class StageFeatures:
    """One stage's model inputs: its training features, and its selection examples with their features."""

    train: list[dict]
    select_examples: Sequence[Example]
    select: list[dict]

    @classmethod
    def encode(cls, handler, tokenizer, stage: TrainingData, config: TrainConfig, labels) -> "StageFeatures":
        select_examples = config.select_subset(stage.select)
        return cls(handler.encode(config.train_subset(stage.train), tokenizer, config.max_length, labels),
                   select_examples, handler.encode(select_examples, tokenizer, config.max_length, labels))

    def renumbered(self, vocabulary: TrimmedVocabulary) -> "StageFeatures":
        return StageFeatures(vocabulary.renumber(self.train), self.select_examples, vocabulary.renumber(self.select))


def _stage_trainer(spec: TaskSpec, handler, model, tokenizer, features: StageFeatures, config: TrainConfig,
                   output_dir: Path, callbacks: Sequence) -> Trainer:
    labels = spec.labels
    return OrderedEvaluationTrainer(
        model=model,
        args=_training_arguments(spec, config, output_dir),
        train_dataset=features.train,
        eval_dataset=features.select,
        data_collator=handler.collator(tokenizer),
        compute_metrics=lambda prediction: handler.selection_metrics(prediction.predictions, prediction.label_ids,
                                                                     features.select, features.select_examples,
                                                                     labels),
        callbacks=trainer_callbacks(config, callbacks),
    )


def trainer_callbacks(config: TrainConfig, callbacks: Sequence) -> list:
    """`callbacks`, evaluations inside epochs and early stopping on the selection metric where the config asks."""
    within_epochs = [EvaluateWithinEpochs(config.evals_per_epoch)] if config.evals_per_epoch > 1 else []
    early_stopping = [EarlyStoppingCallback(config.early_stopping_patience)] if config.early_stopping_patience else []
    return [*within_epochs, *callbacks, *early_stopping]


class EvaluateWithinEpochs(TrainerCallback):
    """Evaluates and saves a checkpoint `per_epoch - 1` times inside each epoch, evenly spaced.

    The epoch strategy still evaluates at each epoch's end (and at the end of a fractional last epoch), so the last
    steps are always scored; the Trainer's step strategy would skip them unless the step count divides evenly.
    """

    def __init__(self, per_epoch: int):
        self.per_epoch = per_epoch
        self._fractions_done = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._fractions_done = math.floor((state.epoch or 0) * self.per_epoch)

    def on_step_end(self, args, state, control, **kwargs):
        fractions = math.floor(state.epoch * self.per_epoch)
        if fractions > self._fractions_done:
            self._fractions_done = fractions
            if fractions % self.per_epoch:  # an epoch's end is the epoch strategy's evaluation
                control.should_evaluate = control.should_save = True


def _training_arguments(spec: TaskSpec, config: TrainConfig, output_dir: Path) -> TrainingArguments:
    return training_arguments(spec.headline_metric, config, output_dir)


def training_arguments(selection_metric: str, config: TrainConfig, output_dir: Path) -> TrainingArguments:
    """The Trainer's arguments: checkpoints are kept by `selection_metric` on the selection set.

    A run with one selection evaluation in all (one epoch or less, evaluated once, no early stopping) selects the model
    it ends with, so it writes no checkpoint to read back. Checkpoints hold the model only: a killed run is redone,
    never resumed, so optimizer states would be written for nothing.
    """
    selects_between_checkpoints = config.epochs > 1 or config.evals_per_epoch > 1 or config.early_stopping_patience > 0
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=2 * config.batch_size,
        gradient_accumulation_steps=config.accumulation_steps,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        optim="adamw_torch_fused" if config.fused_adamw else "adamw_torch",
        torch_compile=config.compile_model,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        seed=config.seed,
        eval_strategy="epoch",
        save_strategy="epoch" if selects_between_checkpoints else "no",
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=selects_between_checkpoints,
        metric_for_best_model=selection_metric,
        greater_is_better=True,
        group_by_length=True,
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
        save_safetensors=True,
        use_cpu=not torch.cuda.is_available(),
    )


def encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder without its task head: what the intermediate phase hands on (heads are task-specific)."""
    return model.base_model


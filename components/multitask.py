"""Multi-task intermediate training: one shared encoder, one head per task, every batch from a single task.

The reference study's jiant runs mix intermediate tasks this way. Each task keeps the Hugging Face model of its type
(classification, multiple choice, tagging or extractive QA), and all of these models share one encoder module, so a
batch trains the encoder and its own task's head. Tasks are sampled in proportion to their training-set size,
optionally capped: a task's weight is min(size, cap), T5's "examples-proportional mixing" with a cap. Checkpoints are
selected on the mean of the tasks' headline metrics, each on its own selection set in the training language (the
zero-shot rule of `components.training`). The phase hands on the shared encoder alone, as a one-task run does.
"""

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedModel, Trainer
from transformers.utils import find_labels

from components.data import Example, TrainingData, resolve_protocol, stage_sizes, training_stages
from components.errors import XstiltsInputError
from components.models import ResolvedModel, load_model
from components.progress import show_progress
from components.task_types import TaskHandler, handler_for
from components.tasks import TaskSpec, get_task
from components.training import (TrainConfig, check_selection_language, freeze_word_embeddings, load_task_model,
                                 trainer_callbacks, training_arguments)

HEADLINE_MEAN = "headline_mean"  # the selection metric: the mean of the tasks' headline metrics


@dataclass(frozen=True)
class MixedTask:
    """One task of a mixture, encoded: its example counts (used and available, `components.data.stage_sizes`), its
    training features, its selection examples and features, and the params that describe its data (protocol, item
    ranges)."""

    spec: TaskSpec
    handler: TaskHandler
    sizes: dict[str, int]
    train_features: list[dict]
    select_examples: list[Example]
    select_features: list[dict]
    data_params: dict[str, str]

    @property
    def name(self) -> str:
        return self.spec.name

    def select_items(self) -> list[tuple[str, dict]]:
        return [(self.name, feature) for feature in self.select_features]

    def selection_metrics(self, predictions, label_ids) -> dict[str, float]:
        return self.handler.selection_metrics(predictions, label_ids, self.select_features, self.select_examples,
                                              self.spec.labels)


def mixing_sizes(sizes: Mapping[str, int], cap: int) -> dict[str, int]:
    """What each task contributes to an epoch: its size, at most `cap` (0 = no cap)."""
    return {task: min(size, cap) if cap else size for task, size in sizes.items()}


def mixing_weights(sizes: Mapping[str, int], cap: int) -> dict[str, float]:
    """Each task's share of the training batches' examples: examples-proportional mixing with a cap."""
    capped = mixing_sizes(sizes, cap)
    total = sum(capped.values())
    return {task: size / total for task, size in capped.items()}


@dataclass(frozen=True)
class Mixture:
    """The tasks of one multi-task run, and the cap on each task's share of an epoch (0 = no cap)."""

    tasks: list[MixedTask]
    size_cap: int

    @property
    def sizes(self) -> dict[str, int]:
        """Training features per task: one per example, except where an input is read in windows (extractive
        QA's long contexts, tagging's long sentences): one per window."""
        return {task.name: len(task.train_features) for task in self.tasks}

    def train_items(self) -> list[tuple[str, dict]]:
        """Every task's training features, tagged with the task, concatenated in task order (the sampler's layout)."""
        return [(task.name, feature) for task in self.tasks for feature in task.train_features]

    def params(self) -> dict[str, str]:
        """`<param>/<task>`: each task's data params, example counts (used, and available before the caps) and
        sampling weight."""
        weights = mixing_weights(self.sizes, self.size_cap)
        params = {}
        for task in self.tasks:
            described = {**task.data_params, **task.sizes, "sampling_weight": f"{weights[task.name]:.4f}"}
            params.update({f"{key}/{task.name}": str(value) for key, value in described.items()})
        return params


def load_mixture(names: Sequence[str], protocol: str, train_lang: str, tokenizer, config: TrainConfig,
                 size_cap: int) -> Mixture:
    """The tasks `names`, loaded in `train_lang` under `protocol` (resolved per task) and encoded.

    Each task trains on its first `config.max_train_examples` items (all when 0). Raises one clear error, before any
    data is read, for a negative cap, a task listed twice, an unknown task, a task without data in `train_lang` or of
    a type that cannot be trained; then, before any encoding, for a task that trains in stages (XCOPA: SocialIQA,
    then COPA).
    """
    if size_cap < 0:
        raise XstiltsInputError(f"task_size_cap must be >= 0 (0 = no cap), got {size_cap}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise XstiltsInputError(f"task {', '.join(map(repr, repeated))} is listed more than once in "
                                f"{','.join(names)!r}; a multi-task run trains each task once")
    specs = [get_task(name) for name in names]
    for spec in specs:
        spec.check_lang(train_lang, training=True)
    handlers = [handler_for(spec) for spec in specs]
    stages = [_single_stage(spec, protocol, train_lang) for spec in specs]
    return Mixture([_encoded(spec, handler, stage, tokenizer, config)
                    for spec, handler, stage in zip(specs, handlers, stages)], size_cap)


def _single_stage(spec: TaskSpec, protocol: str, train_lang: str) -> TrainingData:
    stages = training_stages(spec, resolve_protocol(spec, protocol), train_lang)
    if len(stages) > 1:
        raise XstiltsInputError(f"task {spec.name!r} trains in stages ({', '.join(s.task for s in stages)}); a "
                                "multi-task run mixes tasks that train in one stage")
    check_selection_language(stages[0].select, train_lang)
    check_selection_language(stages[0].train, train_lang)
    return stages[0]


def _encoded(spec: TaskSpec, handler: TaskHandler, stage: TrainingData, tokenizer, config: TrainConfig) -> MixedTask:
    train, select = config.train_subset(stage.train), config.select_subset(stage.select)

    def encode(examples: Sequence[Example]) -> list[dict]:
        return handler.encode(examples, tokenizer, config.max_length, spec.labels)

    return MixedTask(spec, handler, stage_sizes(stage, config), encode(train), select, encode(select), stage.params)


class TaskBatchSampler(Sampler[list[int]]):
    """Batches of one task each, over the tasks' training features concatenated in the order of `sizes`.

    Each epoch draws min(size, cap) of a task's features at random (all of them without a cap), cuts them into
    batches and shuffles the batches of all tasks together: tasks come in proportion to their capped sizes, and a
    capped task sees other items in the next epoch. Epoch e draws with seed `seed + e`.
    """

    def __init__(self, sizes: Mapping[str, int], cap: int, batch_size: int, seed: int):
        self.sizes, self.epoch_sizes = list(sizes.values()), list(mixing_sizes(sizes, cap).values())
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    @property
    def epoch_examples(self) -> int:
        return sum(self.epoch_sizes)

    def set_epoch(self, epoch: int) -> None:
        """The Trainer calls this (through accelerate's data loader) before each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(size / self.batch_size) for size in self.epoch_sizes)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        batches, offset = [], 0
        for size, epoch_size in zip(self.sizes, self.epoch_sizes):
            drawn = (torch.randperm(size, generator=generator)[:epoch_size] + offset).tolist()
            batches += [drawn[start: start + self.batch_size] for start in range(0, epoch_size, self.batch_size)]
            offset += size
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index]


class TaskCollator:
    """Pads a batch of (task, feature) pairs, all of one task, with that task's collator, and names the task in the
    batch: the model routes it to the task's head by that name."""

    def __init__(self, collators: Mapping[str, Callable]):
        self.collators = collators

    def __call__(self, items: Sequence[tuple[str, dict]]) -> dict:
        task = items[0][0]
        batch = self.collators[task]([feature for _, feature in items])
        batch["task"] = task
        return batch


class MultiTaskModel(torch.nn.Module):
    """One Hugging Face task model per task, all holding the same encoder module: `forward(task, **inputs)` runs the
    batch through its task's model, so the batch trains the shared encoder and that task's head only."""

    # The heads average their loss over the batch and take no `num_items_in_batch`, as in one-task training.
    accepts_loss_kwargs = False

    def __init__(self, encoder: PreTrainedModel, task_models: Mapping[str, PreTrainedModel]):
        super().__init__()
        for model in task_models.values():
            setattr(model, model.base_model_prefix, encoder)
        self.task_models = torch.nn.ModuleDict(task_models)

    @property
    def encoder(self) -> PreTrainedModel:
        """The shared encoder: what the intermediate phase hands on."""
        return next(iter(self.task_models.values())).base_model

    def forward(self, task: str, **inputs):
        return self.task_models[task](**inputs)


class MultiTaskTrainer(Trainer):
    """The Trainer over a mixture: one-task batches from a `TaskBatchSampler`, and an evaluation that scores each task
    on its own selection set and adds the mean of their headline metrics, which selects checkpoints."""

    def __init__(self, mixture: Mixture, **kwargs):
        super().__init__(**kwargs)
        self.mixture = mixture
        # Where a batch's gold is: `labels`, or extractive QA's start and end positions.
        self.label_names_of = {name: find_labels(type(model)) for name, model in self.model.task_models.items()}

    def get_train_dataloader(self) -> DataLoader:
        sampler = TaskBatchSampler(self.mixture.sizes, self.mixture.size_cap, self.args.train_batch_size,
                                   self.args.seed)
        return self.accelerator.prepare(DataLoader(self.train_dataset, batch_sampler=sampler,
                                                   collate_fn=self.data_collator,
                                                   num_workers=self.args.dataloader_num_workers,
                                                   pin_memory=self.args.dataloader_pin_memory))

    def num_examples(self, dataloader: DataLoader) -> int:
        """An epoch's training examples (the Trainer's speed metrics and log count these): under a cap, fewer than
        the features the training data loader holds."""
        sampler = getattr(dataloader, "batch_sampler", None)
        return sampler.epoch_examples if isinstance(sampler, TaskBatchSampler) else super().num_examples(dataloader)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """`<prefix>_<task>/<metric>` for every task and `<prefix>_headline_mean`, on the selection sets the Trainer
        was given (`eval_dataset`: task -> items)."""
        metrics = {}
        for task in self.mixture.tasks:
            self.label_names = self.label_names_of[task.name]  # what `predict` returns as the batches' gold
            output = self.predict((eval_dataset or self.eval_dataset)[task.name], ignore_keys, metric_key_prefix)
            loop_metrics = {key.removeprefix(f"{metric_key_prefix}_"): value for key, value in output.metrics.items()}
            task_metrics = {**loop_metrics, **task.selection_metrics(output.predictions, output.label_ids)}
            metrics.update({f"{metric_key_prefix}_{task.name}/{key}": value for key, value in task_metrics.items()})
        metrics[f"{metric_key_prefix}_{HEADLINE_MEAN}"] = statistics.mean(
            metrics[f"{metric_key_prefix}_{task.name}/{task.spec.headline_metric}"] for task in self.mixture.tasks)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


@dataclass
class MultiTaskResult:
    model: MultiTaskModel
    trainable_params: int
    total_params: int


def train_multitask(mixture: Mixture, init: ResolvedModel, tokenizer, config: TrainConfig, output_dir: Path,
                    callbacks: Sequence = ()) -> MultiTaskResult:
    """Trains `init`'s encoder on all of `mixture`'s tasks at once, with a fresh head per task, and keeps the epoch
    with the best mean headline metric."""
    if config.trim_vocabulary:
        raise XstiltsInputError("trim_vocabulary is for one task at a time, not multi-task intermediate training")
    torch.manual_seed(config.seed)
    # The encoder is loaded on its own so that it has the pooler multiple-choice heads read, whichever task comes first.
    model = MultiTaskModel(load_model(init), {task.name: load_task_model(task.spec, init) for task in mixture.tasks})
    if config.freeze_word_embeddings:
        freeze_word_embeddings(model.encoder)
    args = training_arguments(HEADLINE_MEAN, config, output_dir)
    # The batch sampler forms the training batches, and selection must read features in order (QA maps its windows
    # back to examples by position), which length grouping would shuffle. A checkpoint holds the shared encoder once
    # per task model, and safetensors refuses tensors that share memory.
    args.group_by_length, args.save_safetensors = False, False
    trainer = show_progress(MultiTaskTrainer(
        mixture, model=model, args=args, train_dataset=mixture.train_items(),
        eval_dataset={task.name: task.select_items() for task in mixture.tasks},
        data_collator=TaskCollator({task.name: task.handler.collator(tokenizer) for task in mixture.tasks}),
        callbacks=trainer_callbacks(config, callbacks),
    ), "+".join(task.name for task in mixture.tasks))
    trainer.train()
    return MultiTaskResult(
        model=model,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in model.parameters()),
    )

"""What every entry point shares: training options, the error boundary, and the phase runner."""

import functools
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import click

from components import tracking
from components.data import ZERO_SHOT_SOURCE_LANG, resolve_protocol, stage_params, training_stages
from components.errors import XstiltsInputError
from components.models import ResolvedModel, load_tokenizer, resolve_model
from components.tasks import get_task
from components.training import PRECISIONS, TrainConfig, encoder_of, train
from pipelines.methods import FULL_FINE_TUNING, MethodChoice, log_adapter_outputs

DEFAULT_MODEL = "multilingual-e5-small"


def entry_point(function):
    """Bad input ends in one message on stderr and exit status 2 (the run, if any, is already FAILED)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except XstiltsInputError as error:
            click.echo(f"xstilts: error: {error}", err=True)
            sys.exit(2)

    return wrapper


def echo_run(phase: str, run_id: str) -> None:
    """`<phase> run <id>` on stdout, from the process that logged the run: the other processes of a distributed
    launch have none."""
    if run_id:
        click.echo(f"{phase} run {run_id}")


_DEFAULTS = TrainConfig()
TRAIN_OPTIONS = (
    click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
                 help="Registered model name or a local Hugging Face folder."),
    click.option("--protocol", default="auto", show_default=True,
                 help="standard | dev-split | target-dev | auto (see README: Protocols)."),
    click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True),
    click.option("--epochs", type=float, default=_DEFAULTS.epochs, show_default=True),
    click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True),
    click.option("--max-length", type=int, default=_DEFAULTS.max_length, show_default=True),
    click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True),
    click.option("--max-train-examples", type=int, default=0, show_default=True, help="Cap on training examples; 0 = all."),
    click.option("--max-select-examples", type=int, default=0, show_default=True,
                 help="Cap on English selection examples (the first N); 0 = all."),
    click.option("--early-stopping-patience", type=int, default=0, show_default=True),
    click.option("--warmup-ratio", type=float, default=_DEFAULTS.warmup_ratio, show_default=True,
                 help="Share of the training steps over which the learning rate warms up."),
    click.option("--evals-per-epoch", type=int, default=_DEFAULTS.evals_per_epoch, show_default=True,
                 help="English-dev selection evaluations per epoch (checkpoints, early stopping, tuning's pruner)."),
    click.option("--freeze-word-embeddings", type=bool, default=True, show_default=True),
    click.option("--precision", type=click.Choice(PRECISIONS), default=_DEFAULTS.precision, show_default=True,
                 help="Autocast precision of training (bf16/fp16 on GPUs; fp16 needs CUDA)."),
    click.option("--fused-adamw", type=bool, default=_DEFAULTS.fused_adamw, show_default=True,
                 help="torch's fused AdamW kernel (faster on GPUs)."),
    click.option("--accumulation-steps", type=int, default=_DEFAULTS.accumulation_steps, show_default=True,
                 help="Gradient accumulation: optimizer steps see batch-size x accumulation-steps examples."),
    click.option("--compile-model", type=bool, default=_DEFAULTS.compile_model, show_default=True,
                 help="torch.compile the model before training."),
    click.option("--trim-vocabulary", type=bool, default=_DEFAULTS.trim_vocabulary, show_default=True,
                 help="Full fine-tuning: train only the word-embedding rows of the tokens the training and selection "
                      "data use, written back into the full matrix at the end (saves the memory and optimizer work "
                      "of the rest; see README: Speed)."),
    click.option("--train-source", default="",
                 help="Train on this task's English train split instead of the registry's sources (e.g. tydiqa for "
                      "xquad/mlqa: no SQuAD offline); empty = the registry's. Logged as train_source_override."),
    click.option("--select-holdout", type=int, default=0, show_default=True,
                 help="Select on the last N English training items instead of the dev split (tasks without an "
                      "English dev split offline); 0 = dev split. The item ranges are logged."),
)


def train_options(function):
    for option in reversed(TRAIN_OPTIONS):
        function = option(function)
    return function


def run_training_phase(phase: str, task: str, train_lang: str, init_run_id: str, model_name: str, protocol: str,
                       hand_on_encoder_only: bool, train_source: str, select_holdout: int,
                       method: MethodChoice = FULL_FINE_TUNING, parent_run_id: str = "", run_tags: dict | None = None,
                       trainer_callbacks: Sequence = (), **config_values) -> str:
    """Trains `task` in `train_lang` from the base model or an upstream run; logs `model/` (adapter methods:
    `adapters/` and `heads/`, see `pipelines.methods`); returns the run id.

    `train_source` and `select_holdout` are the data options of `components.data.training_stages`. A tuning trial
    nests the run under `parent_run_id` (its study run), adds `run_tags` and its pruning `trainer_callbacks`.
    """
    spec = get_task(task)
    spec.check_lang(train_lang, training=True)
    resolved = resolve_model(model_name)
    config = TrainConfig(**config_values)
    protocol = resolve_protocol(spec, protocol)
    params = training_params(task, train_lang, resolved, config, init_run_id=init_run_id,
                             train_source_override=train_source, select_holdout=select_holdout, **method.params())
    with tracking.phase_run(phase, params, tags={"task": task, **(run_tags or {})},
                            parent_run_id=parent_run_id) as run_id:
        upstream_params = tracking.finished_run(init_run_id, "intermediate").data.params if init_run_id else {}
        method.check_upstream(init_run_id, upstream_params)
        if init_run_id:
            tracking.log_params({"intermediate_task": upstream_params.get("task", ""),
                                 "intermediate_source_lang": upstream_params.get("source_lang", "")})
        elif phase == "target":
            tracking.log_params({"intermediate_task": "none"})
        tokenizer = load_tokenizer(resolved)
        stages = training_stages(spec, protocol, train_lang, train_source=train_source, select_holdout=select_holdout)
        tracking.log_params(stage_params(stages, config))
        with tempfile.TemporaryDirectory(prefix=f"xstilts-{phase}-") as work_dir:
            init = (resolve_model(str(tracking.download_model(init_run_id, "intermediate", Path(work_dir))))
                    if init_run_id and method.method.encoder_from_upstream else resolved)
            setup = method.training_setup(task, train_lang, resolved.name, init_run_id, Path(work_dir))
            result = train(spec, init, tokenizer, stages, train_lang, config, Path(work_dir) / "trainer",
                           callbacks_for=lambda stage: [tracking.MetricsCallback(stage.task, train_lang),
                                                        *trainer_callbacks],
                           setup_model=setup)
            if setup:
                log_adapter_outputs(setup, spec.labels, result, Path(work_dir))
            else:
                log_trained_model(encoder_of(result.model) if hand_on_encoder_only else result.model, tokenizer,
                                  result, Path(work_dir))
    return run_id


def training_params(task: str, train_lang: str, resolved: ResolvedModel, config: TrainConfig, **phase_params) -> dict:
    """The params of every training run: task(s), language, model, method and hyperparameters, with the phase's own."""
    return {"task": task, "source_lang": train_lang, "model": resolved.name, "method": "full", **phase_params,
            **config.as_params()}


@tracking.main_process_only  # the other processes of a distributed launch have trained the same model
def log_trained_model(model, tokenizer, result, work_dir: Path) -> None:
    """Logs `result`'s parameter counts and hands `model` on, with the tokenizer, as the `model/` artifact."""
    tracking.log_params({"trainable_params": result.trainable_params, "total_params": result.total_params})
    model_dir = work_dir / "trained"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tracking.log_dir(model_dir, tracking.MODEL_ARTIFACT)


__all__ = ["ZERO_SHOT_SOURCE_LANG", "entry_point", "echo_run", "train_options", "run_training_phase", "training_params",
           "log_trained_model"]

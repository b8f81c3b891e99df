"""What the training entry points share: the phase runner and the hand-off of a trained model."""

import tempfile
from pathlib import Path
from typing import Sequence

from components import tracking
from components.data import ZERO_SHOT_SOURCE_LANG, resolve_protocol, stage_params, training_stages
from components.models import ResolvedModel, load_tokenizer, resolve_model
from components.tasks import get_task
from components.model_registry import check_max_length
from components.training import TrainConfig, check_trained_task, encoder_of, train
from components.adapter_runs import FULL_FINE_TUNING, MethodChoice, log_adapter_outputs
from components.trained_models import mlflow_model_config, predicts_labels


def run_training_phase(phase: str, task: str, train_lang: str, init_run_id: str, model: str, protocol: str,
                       hand_on_encoder_only: bool, train_source_override: str, select_holdout: int,
                       method: MethodChoice = FULL_FINE_TUNING, parent_run_id: str = "", run_tags: dict | None = None,
                       trainer_callbacks: Sequence = (), **config_values) -> str:
    """Trains `task` in `train_lang` from the base model or an upstream run; logs `model/` (adapter methods:
    `adapters/` and `heads/`, see `components.adapter_runs`); returns the run id.

    `train_source_override` and `select_holdout` are the data options of `components.data.training_stages`. A tuning
    trial nests the run under `parent_run_id` (its study run), adds `run_tags` and its pruning `trainer_callbacks`.
    """
    spec = get_task(task)
    check_trained_task(spec, phase)
    spec.check_lang(train_lang, training=True)
    config = TrainConfig(**config_values)
    check_max_length(config.max_length, model, [spec])
    resolved = resolve_model(model)
    protocol = resolve_protocol(spec, protocol)
    params = training_params(task, train_lang, resolved, config, init_run_id=init_run_id,
                             train_source_override=train_source_override, select_holdout=select_holdout,
                             **method.params())
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
        stages = training_stages(spec, protocol, train_lang, train_source=train_source_override,
                                  select_holdout=select_holdout)
        tracking.log_params(stage_params(stages, config))
        tracking.log_training_inputs(stages, config.train_subset, config.select_subset, train_lang)
        with tempfile.TemporaryDirectory(prefix=f"xstilts-{phase}-") as work_dir:
            init = (resolve_model(str(tracking.download_model(init_run_id, "intermediate", Path(work_dir))))
                    if init_run_id and method.method.encoder_from_upstream else resolved)
            setup = method.training_setup(task, train_lang, resolved.name, init_run_id, Path(work_dir))
            result = train(spec, init, tokenizer, stages, train_lang, config, Path(work_dir) / "trainer",
                           callbacks_for=lambda stage: [tracking.MetricsCallback(stage.task, train_lang),
                                                        *trainer_callbacks],
                           setup_model=setup)
            # A target run's model predicts the task: it is logged as an MLflow model that loads and predicts.
            model_config = (mlflow_model_config(run_id, train_lang) if phase == "target" and predicts_labels(spec)
                            else None)
            if setup:
                log_adapter_outputs(setup, spec.labels, result, Path(work_dir))
                tracking.log_model_entity([tracking.ADAPTERS_ARTIFACT, tracking.HEADS_ARTIFACT], model_config)
            else:
                log_trained_model(encoder_of(result.model) if hand_on_encoder_only else result.model, tokenizer,
                                  result, Path(work_dir), model_config)
    return run_id


def training_params(task: str, train_lang: str, resolved: ResolvedModel, config: TrainConfig, **phase_params) -> dict:
    """The params of every training run: task(s), language, model, method and hyperparameters, with the phase's own."""
    return {"task": task, "source_lang": train_lang, "model": resolved.name, "method": "full", **phase_params,
            **config.as_params()}


@tracking.main_process_only  # the other processes of a distributed launch have trained the same model
def log_trained_model(model, tokenizer, result, work_dir: Path, model_config: dict | None = None) -> None:
    """Logs `result`'s parameter counts and hands `model` on, with the tokenizer, as the `model/` artifact, recorded
    as a LoggedModel (`tracking.log_model_entity`: a loadable MLflow model with `model_config`)."""
    tracking.log_params({"trainable_params": result.trainable_params, "total_params": result.total_params})
    model_dir = work_dir / "trained"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tracking.log_dir(model_dir, tracking.MODEL_ARTIFACT)
    tracking.log_model_entity([tracking.MODEL_ARTIFACT], model_config)


__all__ = ["ZERO_SHOT_SOURCE_LANG", "run_training_phase", "training_params", "log_trained_model"]

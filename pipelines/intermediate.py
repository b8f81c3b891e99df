"""`intermediate`: STILTs phase 2. Fine-tunes the base encoder on one intermediate task, or on several at once (one
shared encoder, one head per task; see `components.multitask`), in any source language.

Reads: the base model (registry name or local folder) and the tasks' data. Writes: `model/` (the encoder, without
its task heads: target runs start from it with a fresh head). With `--method madx` (adapter STILTs): an
intermediate-task adapter stacked on the source language's adapter (a `lang_adapter` run), base model frozen; writes
`adapters/task_<task>/` and `heads/task_<task>/`, which a `target` run of method adapter_stilts continues.
"""

from pipelines.options import command, echo_run

main = command("intermediate", __doc__, "pipelines.intermediate:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

import tempfile
from pathlib import Path

from components import tracking
from components.errors import XstiltsInputError
from components.models import load_tokenizer, resolve_model
from components.multitask import load_mixture, train_multitask
from components.tasks import get_task
from components.model_registry import check_max_length
from components.training import TrainConfig, check_trained_task
from pipelines.cli import log_trained_model, run_training_phase, training_params
from components.adapter_runs import MethodChoice


def run(task: str, source_lang: str, task_size_cap: int, method: str, lang_adapter_run_id: str,
        task_reduction_factor: float, **options) -> None:
    names = [name.strip() for name in task.split(",")]
    choice = MethodChoice.from_options("intermediate", method, lang_adapter_run_id, task_reduction_factor)
    if len(names) > 1 and choice.method.adapters:
        raise XstiltsInputError(f"method {choice.method.name} trains one intermediate-task adapter; multi-task "
                                "training (several tasks) is method full")
    if len(names) > 1:
        run_id = run_multitask_phase(names, source_lang, task_size_cap, **options)
    elif task_size_cap:
        raise XstiltsInputError(f"task_size_cap {task_size_cap} weighs the tasks of a multi-task run; to cap the "
                                "training examples of one task, use max_train_examples")
    else:
        run_id = run_training_phase("intermediate", names[0], source_lang, init_run_id="", hand_on_encoder_only=True,
                                    method=choice, **options)
    echo_run("intermediate", run_id)


def run_multitask_phase(names: list[str], source_lang: str, task_size_cap: int, model: str, protocol: str,
                        train_source_override: str, select_holdout: int, **config_values) -> str:
    """Trains one encoder on the tasks `names` at once; logs it as `model/`, as a one-task run does; returns the run id.

    The task list is checked inside the run, so a bad one leaves a FAILED run with its params.
    """
    resolved = resolve_model(model)
    config = TrainConfig(**config_values)
    task = ",".join(names)
    params = training_params(task, source_lang, resolved, config, init_run_id="", task_size_cap=task_size_cap)
    with tracking.phase_run("intermediate", params, tags={"task": task}) as run_id:
        if train_source_override or select_holdout:
            raise XstiltsInputError("train_source_override and select_holdout apply to one task; a multi-task run "
                                    "trains and selects each task on its registry data")
        specs = [get_task(name) for name in names]
        for spec in specs:
            check_trained_task(spec, "intermediate")
        check_max_length(config.max_length, model, specs)
        tokenizer = load_tokenizer(resolved)
        mixture = load_mixture(names, protocol, source_lang, tokenizer, config, task_size_cap)
        tracking.log_params(mixture.params())
        with tempfile.TemporaryDirectory(prefix="xstilts-intermediate-") as work_dir:
            result = train_multitask(mixture, resolved, tokenizer, config, Path(work_dir) / "trainer",
                                     callbacks=[tracking.MetricsCallback(tracking.MULTITASK, source_lang)])
            log_trained_model(result.model.encoder, tokenizer, result, Path(work_dir))
    return run_id

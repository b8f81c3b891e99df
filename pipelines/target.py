"""`target`: STILTs phase 3. Fine-tunes on the target task's English training data (zero-shot: English only).

Reads: `--init-run-id` (an `intermediate` run whose `model/` encoder gets a fresh head) or the base model; adapter
methods (`--method`, see `pipelines.methods`) also a `lang_adapter` run's English adapter.
Writes: `model/` (encoder and head), or for adapter methods `adapters/task_<task>/` and `heads/task_<task>/`; used by
`evaluate`. Selection uses English dev only.
"""

import click

from pipelines.cli import ZERO_SHOT_SOURCE_LANG, echo_run, entry_point, run_training_phase, train_options
from pipelines.methods import MethodChoice, method_options


@click.command()
@click.option("--task", default="xnli", show_default=True, help="Target task (registry name).")
@click.option("--init-run-id", default="", help="Run id of an `intermediate` run; empty = start from the base model.")
@train_options
@method_options
@entry_point
def main(**options) -> None:
    echo_run("target", train_target(**options))


def train_target(task: str, init_run_id: str, method_name: str, lang_adapter_run_id: str,
                 task_reduction_factor: float, **options) -> str:
    """One `target` run from the entry point's option values; returns its run id. Tuning trials call it too, with
    `run_training_phase`'s nesting and callback options added."""
    method = MethodChoice.from_options("target", method_name, lang_adapter_run_id, task_reduction_factor)
    return run_training_phase("target", task, ZERO_SHOT_SOURCE_LANG, init_run_id=init_run_id,
                              hand_on_encoder_only=False, method=method, **options)


if __name__ == "__main__":
    main()

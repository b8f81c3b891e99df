"""`target`: STILTs phase 3. Fine-tunes on the target task's English training data (zero-shot: English only).

Reads: `--init-run-id` (an `intermediate` run whose `model/` encoder gets a fresh head) or the base model; adapter
methods (`--method`, see `components.adapter_runs`) also a `lang_adapter` run's English adapter.
Writes: `model/` (encoder and head), or for adapter methods `adapters/task_<task>/` and `heads/task_<task>/`; used by
`evaluate`; a LoggedModel that loads from them, an MLflow pyfunc model (no second copy of the weights; a LAReQA or
Mewsli-X dual encoder: one that only points at them; docs/tracking-ui.md), and the training and selection data as
dataset inputs. Selection uses English dev only.
"""

from pipelines.options import command, echo_run

main = command("target", __doc__, "pipelines.target:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

from pipelines.cli import ZERO_SHOT_SOURCE_LANG, run_training_phase
from components.adapter_runs import MethodChoice


def run(**options) -> None:
    echo_run("target", train_target(**options))


def train_target(task: str, init_run_id: str, method: str, lang_adapter_run_id: str, task_reduction_factor: float,
                 **options) -> str:
    """One `target` run from the entry point's option values; returns its run id. Tuning trials call it too, with
    `run_training_phase`'s nesting and callback options added."""
    choice = MethodChoice.from_options("target", method, lang_adapter_run_id, task_reduction_factor)
    return run_training_phase("target", task, ZERO_SHOT_SOURCE_LANG, init_run_id=init_run_id,
                              hand_on_encoder_only=False, method=choice, **options)

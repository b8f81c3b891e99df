"""`intermediate`: STILTs phase 2. Fine-tunes the base encoder on one intermediate task in any source language.

Reads: the base model (registry name or local folder) and the task's data. Writes: `model/` (the encoder, without
its task head: target runs start from it with a fresh head).
"""

import click

from pipelines.cli import entry_point, run_training_phase, train_options


@click.command()
@click.option("--task", default="anli", show_default=True, help="Intermediate task (registry name).")
@click.option("--source-lang", default="en", show_default=True, help="Language of the intermediate task's data.")
@train_options
@entry_point
def main(task: str, source_lang: str, **options) -> None:
    run_id = run_training_phase("intermediate", task, source_lang, init_run_id="", hand_on_encoder_only=True, **options)
    click.echo(f"intermediate run {run_id}")


if __name__ == "__main__":
    main()

"""`evaluate`: zero-shot evaluation of a `target` run in every language of its task.

Reads: `--train-run-id` (a FINISHED `target` run: its `model/` and params). Writes: metrics
`eval/<task>/<lang>/<metric>` and `eval_examples/<task>/<lang>`, artifacts `predictions/<task>/test-<lang>.<ext>`
(the XTREME submission layout). Upstream params (task, intermediate task, source language, model, method, seed)
are copied so the analysis stage finds everything on the evaluate run.
"""

import tempfile
from pathlib import Path

import click

from components import tracking
from components.data import evaluation_data
from components.evaluation import evaluate_language
from components.models import load_pretrained, load_tokenizer, resolve_model
from components.tasks import get_task
from components.task_types import handler_for
from pipelines.cli import entry_point

COPIED_PARAMS = ("task", "model", "method", "seed", "intermediate_task", "intermediate_source_lang", "init_run_id",
                 "data_protocol", "max_length")


@click.command()
@click.option("--train-run-id", required=True, help="Run id of a FINISHED `target` run.")
@click.option("--langs", default="", help="Comma-separated languages; empty = every language of the task.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@entry_point
def main(train_run_id: str, langs: str, batch_size: int) -> None:
    upstream = tracking.finished_run(train_run_id, "target").data.params
    spec = get_task(upstream["task"])
    languages = [lang.strip() for lang in langs.split(",") if lang.strip()] or list(spec.langs)
    for lang in languages:
        spec.check_lang(lang)
    handler = handler_for(spec)
    copied = {key: upstream[key] for key in COPIED_PARAMS if key in upstream}
    with tracking.phase_run("evaluate", {**copied, "train_run_id": train_run_id, "langs": ",".join(languages)},
                            tags={"task": spec.name}) as run_id:
        with tempfile.TemporaryDirectory(prefix="xstilts-evaluate-") as work_dir:
            trained = resolve_model(str(tracking.download_model(train_run_id, "target", Path(work_dir))))
            model, tokenizer = load_pretrained(handler.auto_model, trained), load_tokenizer(trained)
        labels = tuple(model.config.id2label[index] for index in range(model.config.num_labels))
        for lang in languages:
            examples = evaluation_data(spec, upstream["data_protocol"], lang)
            result = evaluate_language(spec, model, tokenizer, examples, labels, int(upstream["max_length"]), batch_size)
            tracking.log_language_metrics("eval", spec.name, lang, result.metrics)
            tracking.log_language_metrics("eval_examples", spec.name, lang, {"n": result.n_examples})
            tracking.log_text(result.prediction_file, f"{tracking.PREDICTIONS_ARTIFACT}/{spec.name}/test-{lang}."
                                                      f"{handler.prediction_extension}")
            click.echo(f"{spec.name} {lang}: " + ", ".join(f"{k}={v:.2f}" for k, v in result.metrics.items()))
    click.echo(f"evaluate run {run_id}")


if __name__ == "__main__":
    main()

"""Zero-shot results of one encoder on every bundled XTREME / XTREME-R task: English training, every language scored.

    python -m benchmarks.zero_shot_table --out results/zero-shot [--tasks panx,udpos] [--model multilingual-e5-small]

Each trained task is fine-tuned on English exactly as `target` does with its defaults (auto protocol, the offline
stand-ins: TyDiQA-GoldP English train for XQuAD/MLQA, SocialIQA dev-split then COPA for XCOPA, the dev-split
protocol for PAWS-X), then scored in every language whose labeled data is in the bundle, on the split the
evaluation policy picks. Tatoeba is scored straight from the encoder. Results: `results.json` and `table.md` under
--out, rewritten as each run finishes. Runs on a GPU when one is visible; the numbers in the README and issue
notes name the machine (`machine` in each JSON file).
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click
import torch

from benchmarks.common import machine, timed, train_english, write_json
from components.data import evaluation_data, evaluation_split, resolve_protocol
from components.errors import XstiltsInputError
from components.evaluation import evaluate_language
from components.models import MODELS, load_model, load_tokenizer, resolve_model
from components.retrieval import RETRIEVAL_TASKS, hidden_state_index
from components.tasks import get_task
from components.training import TrainConfig


@dataclass(frozen=True)
class TableRun:
    """One English training run and the tasks its model is scored on."""

    train_task: str
    scored_tasks: tuple[str, ...]
    config: dict = field(default_factory=dict)
    data_options: dict = field(default_factory=dict)


RUNS = (
    TableRun("pawsx", ("pawsx",), {"epochs": 3}),
    TableRun("xcopa", ("xcopa",), {"epochs": 3}),
    TableRun("xquad", ("xquad", "mlqa"), {"epochs": 3, "max_length": 384},
             {"train_source": "tydiqa", "select_holdout": 300}),
    TableRun("panx", ("panx",), {"epochs": 3}),
    TableRun("udpos", ("udpos",), {"epochs": 3}),
)


def score_languages(task: str, model, tokenizer, labels, max_length: int, batch_size: int,
                    max_eval_examples: int) -> list[dict]:
    """Every language of `task` with labeled data here (the first `max_eval_examples` of each, 0 = all); languages
    without are listed with the reason."""
    spec = get_task(task)
    protocol = resolve_protocol(spec, "auto")
    rows = []
    for lang in spec.langs:
        try:
            split = evaluation_split(spec, protocol, lang)
            examples = evaluation_data(spec, protocol, lang)
            available = len(examples)
            examples = examples[:max_eval_examples] if max_eval_examples else examples
        except (XstiltsInputError, ImportError) as missing:  # ImportError: no `datasets` for the Hub fallback
            rows.append({"task": task, "lang": lang, "missing": str(missing)})
            continue
        with timed() as clock:
            result = evaluate_language(spec, model, tokenizer, examples, labels, max_length, batch_size)
        rows.append({"task": task, "lang": lang, "split": split, "n": result.n_examples, "available": available,
                     **result.metrics,
                     "seconds": clock["seconds"]})
        click.echo(f"{task} {lang} [{split}, {result.n_examples}]: "
                   + ", ".join(f"{name}={value:.2f}" for name, value in result.metrics.items()))
    return rows


def run_trained(run: TableRun, model_name: str, batch_size: int, caps: dict, work_dir: Path) -> dict:
    """Trains `run` on English and scores its tasks; `caps` overrides the run's config (e.g. max_train_examples,
    epochs: CPU-sized runs) and caps the examples scored per language (max_eval_examples)."""
    resolved = resolve_model(model_name)
    tokenizer = load_tokenizer(resolved)
    config = TrainConfig(**{**run.config, **{key: value for key, value in caps.items() if key != "max_eval_examples"}})
    training = train_english(run.train_task, resolved, tokenizer, config, work_dir / run.train_task,
                             **run.data_options)
    model = training.result.model
    rows = [row for task in run.scored_tasks
            for row in score_languages(task, model, tokenizer, training.result.labels, config.max_length, batch_size,
                                       caps.get("max_eval_examples", 0))]
    return {"train_task": run.train_task, "stages": training.stage_tasks, "protocol": training.protocol,
            "config": config.as_params(), "data_options": run.data_options,
            "select": training.result.select_metrics, "train_seconds": training.train_seconds,
            "train_tokens_per_second": training.train_tokens / training.train_seconds, "rows": rows}


def run_tatoeba(model_name: str, batch_size: int) -> dict:
    resolved = resolve_model(model_name)
    model, tokenizer = load_model(resolved), load_tokenizer(resolved)
    if torch.cuda.is_available():
        model.cuda()
    base = MODELS.get(resolved.name, resolved.spec)
    options = {"layer": hidden_state_index(model, base.retrieval_layer), "pooling": base.pooling,
               "prefix": base.retrieval_prefix, "batch_size": batch_size}
    rows = []
    for lang in get_task("tatoeba").langs:
        result = RETRIEVAL_TASKS["tatoeba"].evaluate(model, tokenizer, lang, limit=None, **options)
        rows.append({"task": "tatoeba", "lang": lang, "split": "test", "n": result.n_examples, **result.metrics})
        click.echo(f"tatoeba {lang}: accuracy={result.metrics['accuracy']:.2f}")
    return {"train_task": "none", "retrieval": {key: str(value) for key, value in options.items()}, "rows": rows}


def markdown_table(results: list[dict]) -> str:
    lines = ["| task | lang | split | scored / available | metrics |", "|---|---|---|---|---|"]
    for result in results:
        for row in result["rows"]:
            if "missing" in row:
                continue
            metrics = ", ".join(f"{key} {row[key]:.2f}" for key in ("f1", "exact_match", "accuracy",
                                                                     "token_accuracy", "map_at_20") if key in row)
            lines.append(f"| {row['task']} | {row['lang']} | {row['split']} | {row['n']} / {row.get('available', row['n'])} "
                         f"| {metrics} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--tasks", default="", help="Comma-separated training tasks of RUNS and/or tatoeba; empty = all.")
@click.option("--model", "model_name", default="multilingual-e5-small", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True, help="Evaluation batch size.")
@click.option("--max-train-examples", type=int, default=0, show_default=True,
              help="Cap on English training examples per stage (CPU-sized runs); 0 = all.")
@click.option("--epochs", type=float, default=0, show_default=True, help="Epochs of every run; 0 = each run's own.")
@click.option("--max-eval-examples", type=int, default=0, show_default=True,
              help="Score only the first N examples of each language (CPU-sized runs); 0 = all.")
def main(out_dir: Path, tasks: str, model_name: str, batch_size: int, max_train_examples: int, epochs: float,
         max_eval_examples: int) -> None:
    caps = {key: value for key, value in (("max_train_examples", max_train_examples), ("epochs", epochs),
                                           ("max_eval_examples", max_eval_examples)) if value}
    chosen = {task.strip() for task in tasks.split(",") if task.strip()}
    results = []

    def save(result: dict) -> None:  # after every run, so an interrupted benchmark keeps what it finished
        results.append(result)
        write_json(out_dir / "results.json", {"machine": machine(), "caps": caps, "runs": results})
        (out_dir / "table.md").write_text(markdown_table(results), encoding="utf-8")

    if not chosen or "tatoeba" in chosen:
        save(run_tatoeba(model_name, batch_size))
    for run in RUNS:
        if not chosen or run.train_task in chosen:
            with tempfile.TemporaryDirectory(prefix="xstilts-table-") as work_dir:
                save(run_trained(run, model_name, batch_size, caps, Path(work_dir)))


if __name__ == "__main__":
    main()

"""Vocabulary trimming: full fine-tuning with and without `trim_vocabulary`, word embeddings frozen and trainable.

    python -m benchmarks.vocab_trim --out results/vocab-trim [--examples 640]

Each of the four runs trains English PAN-X (the first `--examples` training items, one epoch at the demo's lr 3e-4,
selection on the first 500 English dev items) with `components.training.train`, as `target` does without MLflow, in a
process of its own so that its peak memory is its own. Reported: seconds per optimizer step (the epoch alone), peak
RSS, the English selection F1, and the word-embedding rows the run trained with.
"""

import resource
import tempfile
from dataclasses import asdict
from pathlib import Path

import click
from transformers import TrainerCallback

from benchmarks.common import machine, train_english, write_json
from benchmarks.overhead import in_fresh_process
from components.models import load_tokenizer, resolve_model
from components.tasks import get_task
from components.training import TrainConfig

TASK = "panx"


class TrainingProbe(TrainerCallback):
    """The word-embedding rows the model trains with, and its optimizer steps."""

    def __init__(self):
        self.rows = self.steps = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.rows = model.get_input_embeddings().num_embeddings

    def on_train_end(self, args, state, control, **kwargs):
        self.steps = state.global_step


def measure(config: TrainConfig, model_name: str) -> dict:
    resolved = resolve_model(model_name)
    probe = TrainingProbe()
    with tempfile.TemporaryDirectory(prefix="xstilts-vocab-trim-") as work_dir:
        trained = train_english(TASK, resolved, load_tokenizer(resolved), config, Path(work_dir),
                                extra_callbacks=[probe])
    return {"freeze_word_embeddings": config.freeze_word_embeddings, "trim_vocabulary": config.trim_vocabulary,
            "train_seconds": trained.train_seconds, "seconds_per_step": trained.train_seconds / probe.steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "select_score": next(iter(trained.result.select_metrics.values())), "embedding_rows": probe.rows,
            "trainable_params": trained.result.trainable_params}


def run_vocab_trim(out_dir: Path, examples: int = 640, model_name: str = "multilingual-e5-small") -> dict:
    """Measures the four runs, writes `vocab-trim.json` under `out_dir` and returns its content."""
    configs = [TrainConfig(epochs=1, lr=3e-4, max_train_examples=examples, max_select_examples=500,
                           freeze_word_embeddings=freeze, trim_vocabulary=trim)
               for freeze in (True, False) for trim in (False, True)]
    results = []
    for config in configs:
        result = in_fresh_process(measure, config, model_name)
        results.append(result)
        click.echo(f"freeze {result['freeze_word_embeddings']}, trim {result['trim_vocabulary']}: "
                   f"{result['seconds_per_step']:.2f} s/step, peak RSS {result['peak_rss_mb']:,.0f} MB, English "
                   f"select {get_task(TASK).headline_metric} {result['select_score']:.2f}, "
                   f"{result['embedding_rows']:,} embedding rows")
    payload = {"machine": machine(), "settings": {"task": TASK, "examples": examples, "model": model_name,
                                                  "config": asdict(configs[0])}, "results": results}
    write_json(out_dir / "vocab-trim.json", payload)
    return payload


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--examples", type=int, default=640, show_default=True, help="English PAN-X training items.")
@click.option("--model", "model_name", default="multilingual-e5-small", show_default=True)
def main(out_dir: Path, examples: int, model_name: str) -> None:
    run_vocab_trim(out_dir, examples, model_name)


if __name__ == "__main__":
    main()

"""The GPU training path, checked for correctness and measured: fp32 vs bf16 autocast + fused AdamW (+ compile).

    python -m benchmarks.gpu_path --out results/gpu-path

XNLI under the dev-split protocol (1,800 English training items, selection on 198, 492 scored per language): each
setting's English selection accuracy and zero-shot average over the 15 languages show that the fast path learns the
same thing; training tokens/s (non-padding tokens, training time alone) and evaluation examples/s show what it gains.
"""

import tempfile
from pathlib import Path

import click

from benchmarks.common import machine, timed, train_english, write_json
from components.data import evaluation_data
from components.evaluation import evaluate_language
from components.models import load_tokenizer, resolve_model
from components.tasks import get_task
from components.training import TrainConfig

SETTINGS = {
    "fp32": {},
    "bf16+fused": {"precision": "bf16", "fused_adamw": True},
    "bf16+fused+compile": {"precision": "bf16", "fused_adamw": True, "compile_model": True},
}


def measure(name: str, overrides: dict, model_name: str, epochs: float, work_dir: Path) -> dict:
    resolved = resolve_model(model_name)
    tokenizer = load_tokenizer(resolved)
    config = TrainConfig(epochs=epochs, **overrides)
    training = train_english("xnli", resolved, tokenizer, config, work_dir / name)
    spec = get_task("xnli")
    scores, examples_scored = {}, 0
    with timed() as clock:
        for lang in spec.langs:
            examples = evaluation_data(spec, training.protocol, lang)
            result = evaluate_language(spec, training.result.model, tokenizer, examples, training.result.labels,
                                       config.max_length, batch_size=256, precision=config.precision)
            scores[lang], examples_scored = result.metrics["accuracy"], examples_scored + result.n_examples
    summary = {"setting": name, "config": config.as_params(), "select_accuracy": training.result.select_metrics,
               "train_seconds": training.train_seconds,
               "train_tokens_per_second": training.train_tokens / training.train_seconds,
               "eval_examples_per_second": examples_scored / clock["seconds"],
               "zero_shot_average": sum(scores.values()) / len(scores), "accuracy": scores}
    click.echo(f"{name}: select {training.result.select_metrics}, average {summary['zero_shot_average']:.2f}, "
               f"train {summary['train_tokens_per_second']:.0f} tokens/s, "
               f"eval {summary['eval_examples_per_second']:.0f} examples/s")
    return summary


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--model", "model_name", default="multilingual-e5-small", show_default=True)
@click.option("--epochs", type=float, default=3, show_default=True)
@click.option("--settings", "names", default=",".join(SETTINGS), show_default=True)
def main(out_dir: Path, model_name: str, epochs: float, names: str) -> None:
    results = []
    for name in names.split(","):
        with tempfile.TemporaryDirectory(prefix="xstilts-gpu-") as work_dir:
            results.append(measure(name, SETTINGS[name], model_name, epochs, Path(work_dir)))
        write_json(out_dir / "gpu-path.json", {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()

"""Evaluation throughput: xstilts' length-sorted, dynamically padded batches vs a naive evaluator.

    python -m benchmarks.eval_throughput --out results/eval-throughput [--examples 512]

The naive evaluator batches in input order and pads every input to the task's maximum length, as a plain
`padding="max_length"` loop does, in fp32. xstilts' evaluator is measured twice: in fp32 (the `evaluate` default),
which must give the naive evaluator's logits, and with bf16 autocast (`evaluate --eval-precision bf16`), whose logits differ
by bf16 rounding (`benchmarks/eval_precision.py` measures what that does to the metrics of trained models). All score
the same features of one language per task type with the same model (the untrained offline encoder with a fresh head:
throughput does not depend on the weights). Each evaluator first scores one untimed batch, so that one-time kernel
setup is not counted as throughput.
"""

from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import machine, timed, write_json
from components.data import evaluation_data, resolve_protocol
from components.evaluation import LABEL_KEYS, predict_logits
from components.models import load_pretrained, load_tokenizer, resolve_model
from components.tasks import get_task
from components.task_types import handler_for

# One task per trained type: (scored language, the max length its training uses; QA windows are longer).
TASKS = {"xnli": ("de", 128), "xcopa": ("it", 128), "panx": ("de", 128), "xquad": ("de", 384)}
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")
SORTED_PRECISIONS = ("fp32", "bf16")


def _padded(values, length: int, fill):
    if values and isinstance(values[0], list):  # multiple choice: one sequence per choice
        return [_padded(choice, length, fill) for choice in values]
    return list(values) + [fill] * (length - len(values))


def pad_to_max_length(feature: dict, max_length: int, pad_id: int) -> dict:
    padded = dict(feature)
    for key in TOKEN_KEYS:
        if key in feature:
            padded[key] = _padded(feature[key], max_length, pad_id if key == "input_ids" else 0)
    return padded


def naive_logits(model, features: list[dict], handler, tokenizer, batch_size: int) -> list[np.ndarray]:
    """Input order, every input padded to max length; per-token logits cut back to the input's own length."""
    collator = handler.collator(tokenizer)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            batch = collator(features[start: start + batch_size])
            for key in LABEL_KEYS:
                batch.pop(key, None)
            logits = handler.model_logits(model(**batch)).float().numpy()
            outputs.extend(logits)
    return outputs


def measure(task: str, lang: str, max_length: int, examples_per_task: int, batch_size: int, model_name: str) -> dict:
    spec = get_task(task)
    handler = handler_for(spec)
    resolved = resolve_model(model_name)
    tokenizer = load_tokenizer(resolved)
    torch.manual_seed(0)
    label_maps = {"num_labels": len(spec.labels)} if spec.labels else {}
    model = load_pretrained(handler.auto_model, resolved, **label_maps).eval()
    examples = evaluation_data(spec, resolve_protocol(spec, "auto"), lang)[:examples_per_task]
    features = handler.encode(examples, tokenizer, max_length, spec.labels)
    padded = [pad_to_max_length(feature, max_length, tokenizer.pad_token_id) for feature in features]
    naive_logits(model, padded[:batch_size], handler, tokenizer, batch_size)
    with timed() as naive_clock:
        naive = naive_logits(model, padded, handler, tokenizer, batch_size)
    result = {"task": task, "lang": lang, "type": spec.task_type.value, "examples": len(examples),
              "features": len(features), "max_length": max_length,
              "naive_examples_per_second": len(examples) / naive_clock["seconds"], "sorted": []}
    for precision in SORTED_PRECISIONS:
        predict_logits(model, features[:batch_size], handler, tokenizer, batch_size, precision)
        with timed() as clock:
            logits = predict_logits(model, features, handler, tokenizer, batch_size, precision)
        worst = max(float(np.abs(a - b[: len(a)]).max()) for a, b in zip(logits, naive))
        path = {"precision": precision, "examples_per_second": len(examples) / clock["seconds"],
                "speedup": naive_clock["seconds"] / clock["seconds"], "max_abs_logit_difference": worst}
        result["sorted"].append(path)
        click.echo(f"{task} sorted {precision}: {path['examples_per_second']:.1f} vs naive "
                   f"{result['naive_examples_per_second']:.1f} examples/s, x{path['speedup']:.2f}, "
                   f"max |logit difference| {worst:.2e}")
    return result


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--examples", "examples_per_task", type=int, default=512, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--model", "model_name", default="multilingual-e5-small", show_default=True)
def main(out_dir: Path, examples_per_task: int, batch_size: int, model_name: str) -> None:
    run_eval_throughput(out_dir, examples_per_task, batch_size, model_name)


def run_eval_throughput(out_dir: Path, examples_per_task: int = 512, batch_size: int = 64,
                        model_name: str = "multilingual-e5-small") -> dict:
    """Measures every task type, writes `eval-throughput.json` under `out_dir` and returns its content."""
    results = [measure(task, lang, max_length, examples_per_task, batch_size, model_name)
               for task, (lang, max_length) in TASKS.items()]
    payload = {"machine": machine(), "settings": {"examples_per_task": examples_per_task, "batch_size": batch_size,
                                                  "model": model_name}, "results": results}
    write_json(out_dir / "eval-throughput.json", payload)
    return payload


if __name__ == "__main__":
    main()

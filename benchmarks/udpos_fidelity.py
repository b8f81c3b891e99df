"""UD-POS F1 before and after issue 17's scoring fixes, on one small English UD-POS run of an encoder.

    python -m benchmarks.udpos_fidelity [--out benchmarks/results/udpos-fidelity.json] [--langs en,ar,de,...]

Trains UD-POS on English as `target` does (the same components, no tracking; CPU-sized caps by default), then scores
each language on the split evaluation picks, twice:

- before: one input per sentence cut at `max_length`, every word past it given the first label (ADJ), and seqeval
  1.2.2's reading of the tags (`tagging_f1(..., "iob")`: what the suite did before issue 17);
- after: `evaluate_language` as it is now: every word predicted from its window, seqeval 0.0.12's reading.

Both score the same model (trained as training now does, every word in its window): the difference is the
evaluation alone. The crossed scores (after's predictions under 1.2.2, before's under 0.0.12) separate the two
changes, and `words_past_max_length` counts the words the cut left to the default label. Writes one JSON file
(`machine` names the hardware). The defaults take about 10 minutes on 2 shared CPU cores, most of it training.
"""

import warnings
from pathlib import Path

import click
import numpy as np

from benchmarks.common import machine, timed, train_english, write_json
from components.data import evaluation_set
from components.evaluation import evaluate_language, predict_logits
from components.metrics import tagging_f1
from components.models import load_tokenizer, resolve_model
from components.tasks import get_task
from components.task_types import IGNORED_LABEL, handler_for
from components.training import TrainConfig

UDPOS = get_task("udpos")
OLD_SCHEME = "iob"  # seqeval 1.2.2 on UPOS tags: the tag's first letter read as an IOB prefix


def truncated_predictions(model, tokenizer, examples, labels, max_length: int, batch_size: int
                          ) -> tuple[list[list[str]], int]:
    """The tagging decode before issue 17: one input per sentence cut at `max_length`, each word tagged at its first
    sub-word, words past the cut tagged `labels[0]`; and how many words that was."""
    encoded = tokenizer([example["tokens"] for example in examples], is_split_into_words=True, truncation=True,
                        max_length=max_length)
    features = []
    for index in range(len(examples)):
        word_ids = encoded.word_ids(index)
        first = [word is not None and (position == 0 or word_ids[position - 1] != word)
                 for position, word in enumerate(word_ids)]
        features.append({"input_ids": encoded["input_ids"][index], "attention_mask": encoded["attention_mask"][index],
                         "labels": [0 if is_first else IGNORED_LABEL for is_first in first]})
    logits = predict_logits(model, features, handler_for(UDPOS), tokenizer, batch_size)
    predictions, past = [], 0
    for row, feature, example in zip(logits, features, examples):
        tags = [labels[tag] for tag in row[np.asarray(feature["labels"]) != IGNORED_LABEL].argmax(axis=-1)]
        past += len(example["tokens"]) - len(tags)
        predictions.append(tags + [labels[0]] * (len(example["tokens"]) - len(tags)))
    return predictions, past


def score_language(model, tokenizer, lang: str, labels, max_length: int, batch_size: int, max_examples: int) -> dict:
    evaluated = evaluation_set(UDPOS, "standard", lang).first(max_examples)
    examples, gold = evaluated.examples, [example["tags"] for example in evaluated.examples]
    with timed() as clock:
        windowed = evaluate_language(UDPOS, model, tokenizer, examples, labels, max_length, batch_size)
    every_word = [block.split("\n") for block in windowed.prediction_file.strip("\n").split("\n\n")]
    truncated, past = truncated_predictions(model, tokenizer, examples, labels, max_length, batch_size)
    f1 = lambda predictions, scheme: tagging_f1(gold, predictions, scheme)["f1"]
    return {"lang": lang, "split": evaluated.choice.split, "sentences": len(examples),
            "words": sum(map(len, gold)), "words_past_max_length": past,
            "f1_before": f1(truncated, OLD_SCHEME), "f1_after": f1(every_word, UDPOS.tag_scheme),
            "f1_every_word_seqeval_1_2_2": f1(every_word, OLD_SCHEME),
            "f1_truncated_seqeval_0_0_12": f1(truncated, UDPOS.tag_scheme),
            "token_accuracy_before": tagging_f1(gold, truncated, OLD_SCHEME)["token_accuracy"],
            "token_accuracy_after": windowed.metrics["token_accuracy"], "after_seconds": clock["seconds"]}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| lang | split | sentences | words | words past max_length | F1 before | F1 after | "
             "(after's predictions, seqeval 1.2.2) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['lang']} | {row['split']} | {row['sentences']} | {row['words']} | "
              f"{row['words_past_max_length']} | {row['f1_before']:.2f} | {row['f1_after']:.2f} | "
              f"{row['f1_every_word_seqeval_1_2_2']:.2f} |" for row in rows]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/udpos-fidelity.json"), show_default=True)
@click.option("--langs", default="en,ar,de,ja,ko,vi,yo,zh", show_default=True)
@click.option("--model", "model_name", default="multilingual-e5-small", show_default=True)
@click.option("--max-train-examples", type=int, default=300, show_default=True)
@click.option("--max-select-examples", type=int, default=100, show_default=True)
@click.option("--epochs", type=float, default=3, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--max-eval-examples", type=int, default=300, show_default=True,
              help="The first N sentences of each language; 0 = all.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--work-dir", type=click.Path(path_type=Path), default=Path("/tmp/udpos-fidelity"), show_default=True)
def main(out_file: Path, langs: str, model_name: str, max_train_examples: int, max_select_examples: int,
         epochs: float, lr: float, max_length: int, max_eval_examples: int, batch_size: int, work_dir: Path) -> None:
    # The "before" scores read UPOS tags as IOB on purpose; seqeval 1.x warns about every such tag.
    warnings.filterwarnings("ignore", message=".*seems not to be NE tag", category=UserWarning)
    resolved = resolve_model(model_name)
    tokenizer = load_tokenizer(resolved)
    config = TrainConfig(epochs=epochs, lr=lr, max_length=max_length, max_train_examples=max_train_examples,
                         max_select_examples=max_select_examples)
    training = train_english(UDPOS.name, resolved, tokenizer, config, work_dir)
    rows = []
    for lang in langs.split(","):
        rows.append(score_language(training.result.model, tokenizer, lang, training.result.labels, max_length,
                                   batch_size, max_eval_examples))
        click.echo(f"{lang}: {rows[-1]}")
    write_json(out_file, {"machine": machine(), "model": model_name, "config": config.as_params(),
                          "max_eval_examples": max_eval_examples, "select": training.result.select_metrics,
                          "train_seconds": training.train_seconds, "rows": rows})
    click.echo(markdown_table(rows))


if __name__ == "__main__":
    main()

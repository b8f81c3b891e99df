"""Terminal output: progress bars in a log and in a terminal, phase banners, and the Trainer's output on a tiny model."""

import io
import re

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from components import progress
from components.progress import Progress, format_duration, format_metrics


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_durations_read_as_minutes_or_hours():
    assert [format_duration(s) for s in (0, 59.4, 61, 3661)] == ["0:00", "0:59", "1:01", "1:01:01"]


def test_a_log_gets_a_line_at_each_tenth_and_one_at_the_end():
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("train xnli", 20, "steps", log, min_interval_s=0, clock=clock)
    for step in range(1, 21):
        clock.now = step * 1.5
        bar.update(step, note=f"loss {2 - step / 20:.4g}")
    bar.close()
    lines = log.getvalue().splitlines()
    # 10%..90% at steps 2, 4, ..., 18, then the end (step 20); 1.5 s per step, ETA = remaining steps x 1.5 s.
    assert len(lines) == 10
    assert lines[0] == "train xnli 2/20 steps (10%), 0:03 elapsed, ETA 0:27, loss 1.9"
    assert lines[4] == "train xnli 10/20 steps (50%), 0:15 elapsed, ETA 0:15, loss 1.5"
    assert lines[-1] == "train xnli 20/20 steps (100%), 0:30, loss 1"
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def test_a_log_gets_at_most_one_line_per_interval_and_nothing_for_quick_work():
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("evaluate xnli [de]", 100, "batches", log, min_interval_s=10, clock=clock)
    for batch in range(1, 101):
        clock.now = batch * 0.5  # a tenth every 5 s: only every other tenth is 10 s after the last line
        bar.update(batch)
    bar.close()
    assert [line.split(" (")[0] for line in log.getvalue().splitlines()] == [
        "evaluate xnli [de] 20/100 batches", "evaluate xnli [de] 40/100 batches", "evaluate xnli [de] 60/100 batches",
        "evaluate xnli [de] 80/100 batches", "evaluate xnli [de] 100/100 batches"]

    quick_clock, quiet = FakeClock(), io.StringIO()
    with Progress("evaluate xnli [sw]", 4, "batches", quiet, min_interval_s=10, clock=quick_clock) as quick:
        for batch in range(1, 5):
            quick_clock.now = batch
            quick.update(batch)
    assert quiet.getvalue() == ""


def test_a_terminal_gets_one_line_that_redraws_itself():
    clock, terminal = FakeClock(), Terminal()
    bar = Progress("train panx", 4, "steps", terminal, clock=clock)
    for step in range(1, 5):
        clock.now = step
        bar.update(step)
    bar.close()
    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    redraws = [part.removesuffix("\x1b[K") for part in text.rstrip("\n").split("\r")[1:]]
    assert redraws[0] == "train panx [######..................] 1/4 steps (25%), 0:01 elapsed, ETA 0:03"
    assert redraws[-1] == "train panx [########################] 4/4 steps (100%), 0:04"


def test_metrics_are_rounded_without_the_trainers_bookkeeping():
    metrics = {"eval_loss": 0.9676119089126587, "eval_accuracy": 55.55555555555556, "eval_runtime": 2.5467,
               "eval_samples_per_second": 77.746, "epoch": 1.0}
    assert format_metrics(metrics, prefix="eval_") == "loss 0.9676, accuracy 55.56"


@pytest.fixture
def every_tenth(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0)


def test_training_prints_banners_a_bar_and_selection_lines_not_raw_trainer_dicts(tiny_model_dir, tmp_path, capsys,
                                                                                  every_tenth):
    from components.data import TrainingData
    from components.models import resolve_model
    from components.tasks import get_task
    from components.training import TrainConfig, train

    examples = [{"text_a": f"premise {i}", "text_b": "hypothesis", "label": ("entailment", "neutral")[i % 2],
                 "lang": "en"} for i in range(40)]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = TrainConfig(epochs=2, batch_size=4, max_length=32)  # 10 steps per epoch, 20 in all
    train(get_task("xnli"), resolve_model(str(tiny_model_dir)), tokenizer, [TrainingData("xnli", examples,
                                                                                          examples[:8], {})],
          "en", config, tmp_path)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "{'" not in output  # no raw Trainer log dict
    lines = captured.err.splitlines()
    assert "== tokenizing xnli: 40 training and 8 selection items, max length 32" in lines
    steps = [int(match[1]) for line in lines if (match := re.match(r"train xnli (\d+)/20 steps", line))]
    assert steps == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    selections = [line for line in lines if line.startswith("selection at epoch")]
    assert [line.split(":")[0] for line in selections] == ["selection at epoch 1.00 (step 10)",
                                                          "selection at epoch 2.00 (step 20)"]
    assert all(re.fullmatch(r"selection at epoch .*: loss \d\.\d{3,4}, accuracy \d+\.\d\d", line)
               for line in selections)


def test_evaluation_prints_a_banner_and_a_bar_over_batches(tiny_model_dir, capsys, every_tenth):
    from components.evaluation import evaluate_language
    from components.tasks import get_task

    spec = get_task("xnli")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    examples = [{"text_a": f"premise {i}", "text_b": "hypothesis", "label": "neutral", "lang": "de"}
                for i in range(10)]
    evaluate_language(spec, model, tokenizer, examples, spec.labels, 32, batch_size=2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "== evaluating xnli [de]: 10 items, fp32"
    assert [line.split(" (")[0] for line in lines[1:]] == [f"evaluate xnli [de] {n}/5 batches" for n in range(1, 6)]

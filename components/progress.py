"""What a phase prints while it works: phase banners and progress bars with a step count and an ETA.

In a terminal a bar is one line that redraws itself; in a log (stream not a TTY) it writes a plain line at every
tenth of the way, at most one per `min_interval_s`, and a last line when it ends, so that a log stays short. The
Hugging Face Trainer's own output (raw `{'loss': 1.0984, 'grad_norm': 0.1686774641275406, ...}` dicts, printed when
its tqdm bar is off) is replaced by `TrainerProgress`: a bar over the optimizer steps showing the latest loss, a bar
over each selection evaluation's batches, and one line per selection result with rounded metrics.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from transformers import PrinterCallback, Trainer, TrainerCallback

BAR_WIDTH = 24
PLAIN_LINES = 10  # a log gets a line at each tenth of the way
LOG_INTERVAL_S = 5.0  # ... at most one per this many seconds


def format_duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def banner(text: str, stream: TextIO | None = None) -> None:
    """A phase banner: one line saying what the phase is doing now (loading data, evaluating, ...)."""
    stream = stream or sys.stderr
    print(f"== {text}", file=stream, flush=True)


class Progress:
    """A bar over `total` units of work (steps, batches) with the count, the share done, elapsed time and ETA.

    Args:
        unit: what is counted, in the plural (`steps`, `batches`).
        min_interval_s: a log's least seconds between two lines (default `LOG_INTERVAL_S`; a terminal redraws at
            most every 0.1 s); a bar that ends sooner than that in a log writes nothing, so quick work stays silent.
        clock: seconds from an arbitrary origin (tests pass a fake one).
    """

    def __init__(self, label: str, total: int, unit: str = "steps", stream: TextIO | None = None,
                 min_interval_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.min_interval_s = LOG_INTERVAL_S if min_interval_s is None else min_interval_s
        self.clock = clock
        self.done = 0
        self.note = ""
        self._start = self._last_shown = clock()
        self._tenths_shown = 0
        self._closed = False

    def update(self, done: int, note: str | None = None) -> None:
        """Sets the units done so far (not an increment: the Trainer reports its global step) and the note shown
        after the ETA (e.g. the latest loss)."""
        self.done = min(done, self.total) if self.total else done
        if note is not None:
            self.note = note
        now = self.clock()
        if self.interactive:
            if now - self._last_shown >= 0.1 or self.done == self.total:
                self._draw(now)
        else:
            tenths = self.done * PLAIN_LINES // self.total if self.total else 0
            if tenths > self._tenths_shown and self.done < self.total and now - self._last_shown >= self.min_interval_s:
                self._tenths_shown = tenths
                self._write_line(now)

    def advance(self, units: int = 1) -> None:
        self.update(self.done + units)

    def close(self) -> None:
        """Ends the bar: a terminal keeps its last state on a line of its own; a log gets a last line unless the
        work took less than `min_interval_s`."""
        if self._closed:
            return
        self._closed = True
        now = self.clock()
        if self.interactive:
            self._draw(now)
            print(file=self.stream, flush=True)
        elif now - self._start >= self.min_interval_s:
            self._write_line(now)

    def line(self, now: float) -> str:
        """The bar's text at time `now`: label, count, share, elapsed, ETA (remaining units at the mean pace so
        far; `?` before the first unit) and the note."""
        elapsed = now - self._start
        share = self.done / self.total if self.total else 1.0
        if self.done >= self.total:
            timing = f"{format_duration(elapsed)}"
        elif self.done:
            timing = f"{format_duration(elapsed)} elapsed, ETA {format_duration(elapsed / self.done * (self.total - self.done))}"
        else:
            timing = f"{format_duration(elapsed)} elapsed, ETA ?"
        bar = ""
        if self.interactive:
            filled = round(share * BAR_WIDTH)
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
        note = f", {self.note}" if self.note else ""
        return f"{self.label} {bar}{self.done}/{self.total} {self.unit} ({share:.0%}), {timing}{note}"

    def _draw(self, now: float) -> None:
        self._last_shown = now
        # \r returns to the line's start; ESC[K clears what a longer previous line left behind.
        print(f"\r{self.line(now)}\x1b[K", end="", file=self.stream, flush=True)

    def _write_line(self, now: float) -> None:
        self._last_shown = now
        print(self.line(now), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def format_metrics(metrics: dict[str, float], prefix: str = "") -> str:
    """`name value` pairs, 4 significant digits for losses and 2 decimals for 0-100 scores, without the Trainer's
    bookkeeping (runtime, samples per second, epoch)."""
    shown = []
    for key, value in metrics.items():
        name = key[len(prefix):] if prefix and key.startswith(prefix) else key
        if name in TRAINER_BOOKKEEPING or not isinstance(value, (int, float)):
            continue
        shown.append(f"{name} {value:.4g}" if "loss" in name else f"{name} {value:.2f}")
    return ", ".join(shown)


TRAINER_BOOKKEEPING = {"runtime", "samples_per_second", "steps_per_second", "epoch", "total_flos", "grad_norm",
                       "learning_rate", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


class TrainerProgress(TrainerCallback):
    """The Trainer's terminal output: a bar over the optimizer steps (with the latest training loss), a bar over a
    selection evaluation's batches, and each selection result on a line of its own."""

    def __init__(self, label: str, stream: TextIO | None = None, min_interval_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.stream, self.min_interval_s, self.clock = label, stream or sys.stderr, min_interval_s, clock
        self.training: Progress | None = None
        self.selecting: Progress | None = None

    def _bar(self, label: str, total: int, unit: str) -> Progress:
        return Progress(label, total, unit, self.stream, self.min_interval_s, self.clock)

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = self._bar(f"train {self.label}", state.max_steps, "steps")

    def on_step_end(self, args, state, control, **kwargs):
        self.training.update(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and self.training:
            self.training.update(state.global_step, f"loss {logs['loss']:.4g}")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.selecting is None:
            self.selecting = self._bar(f"select {self.label}", len(eval_dataloader), "batches")
        self.selecting.advance()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.selecting:
            self.selecting.close()
            self.selecting = None
        if self.training and self.training.interactive:
            print(file=self.stream)  # the training bar's line stays; the result goes below it
        print(f"selection at epoch {state.epoch:.2f} (step {state.global_step}): "
              f"{format_metrics(metrics or {}, prefix='eval_')}", file=self.stream, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training:
            self.training.close()


def show_progress(trainer: Trainer, label: str, stream: TextIO | None = None) -> Trainer:
    """`trainer` printing `TrainerProgress` instead of its raw log dicts (its tqdm bars are off: `disable_tqdm`)."""
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainerProgress(label, stream))
    return trainer

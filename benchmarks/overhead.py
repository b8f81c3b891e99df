"""Framework overhead: xstilts' training step (`components.training.train`, as `target` runs it) vs a bare PyTorch loop.

    python -m benchmarks.overhead --out results/overhead [--steps 30] [--rounds 2] [--methods full,madx] [--task xnli]

Both loops train the same model (same seed, same fresh head, same frozen parameters: word embeddings for `full`,
everything but the task adapter and head for `madx`, whose task adapter is stacked on an English language adapter)
on the same batches: the same English features of `--task` (XNLI: the dev-split protocol's 1,800 training items),
batched in the same length-grouped order with the same dynamic padding, under the same AdamW (weight decay off for
biases and LayerNorm weights), linear warmup schedule and gradient clipping. The xstilts side is `train` itself,
without MLflow logging (`target`'s MetricsCallback), for one epoch of exactly `--steps` batches.

Step time is the wall time between the ends of consecutive optimizer steps, so it covers fetching and collating the
batch, forward, backward, clipping, the optimizer and scheduler steps and, for the Trainer, its callbacks and loss
logging; the selection evaluation and checkpoint that follow the epoch's last step are outside it. The first
`--warmup` intervals are dropped. Peak memory is read when the last step ends (RSS high-water mark; on a GPU also
the allocator's peak), with each (method, loop) pair in a fresh process so that peaks do not mix.

The bare loop restores the random state the Trainer had when its epoch began, so that it draws the same batch order
and dropout masks: equal losses on the first steps show that the two loops do the same work.

A shared machine drifts (other tenants, clock boost) over the minutes a measurement takes, so the loops run in
`--rounds` rounds of alternating order (xstilts, bare, then bare, xstilts, ...) and each loop's step times are pooled
over its rounds: drift then weighs on both sides alike instead of on whichever loop ran later.
"""

import math
import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback, get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from benchmarks.common import machine, synchronize, write_json
from components.adapters import (DEFAULT_LANG_REDUCTION_FACTOR, DEFAULT_TASK_REDUCTION_FACTOR, LANG, AdapterModel,
                                 TaskAdapterTraining, lang_adapter_name)
from components.data import ZERO_SHOT_SOURCE_LANG, resolve_protocol, training_stages
from components.models import load_tokenizer, resolve_model
from components.tasks import get_task
from components.task_types import handler_for
from components.training import TrainConfig, freeze_word_embeddings, load_task_model, train

METHODS = ("full", "madx")
LOOPS = ("xstilts", "bare")
MAX_GRAD_NORM = 1.0  # the Trainer's default max_grad_norm, which xstilts keeps
RNG_STATE_FILE = "trainer-rng-state.pt"
COMPARED_LOSSES = 5  # first steps whose losses must agree


@dataclass(frozen=True)
class OverheadRun:
    """One (method, loop) measurement; `work_dir` is shared by the loops of one benchmark (random state, adapter)."""

    method: str
    loop: str
    task: str
    steps: int
    warmup: int
    batch_size: int
    max_length: int
    model_name: str
    work_dir: Path

    @property
    def config(self) -> TrainConfig:
        return overhead_config(self.steps, self.batch_size, self.max_length)


def overhead_config(steps: int, batch_size: int, max_length: int) -> TrainConfig:
    """`train`'s defaults for one epoch of exactly `steps` batches: the epoch's selection evaluation and checkpoint
    come after the last timed step."""
    return TrainConfig(epochs=1, batch_size=batch_size, max_length=max_length, max_train_examples=steps * batch_size)


class StepProbe(TrainerCallback):
    """When each optimizer step ended, the loss of every training forward pass, and peak memory when the last step
    ended. The Trainer calls the hooks; the bare loop calls `step_ended` and `training_ended` itself."""

    def __init__(self):
        self.step_ends: list[float] = []
        self.losses: list[torch.Tensor] = []
        self.peaks: dict[str, float] = {}

    def record_losses(self, model: torch.nn.Module) -> None:
        model.register_forward_hook(self._keep_loss)

    def _keep_loss(self, module, args, output):
        if module.training:  # the selection evaluation after the last step also runs forward
            self.losses.append(output["loss"].detach())

    def step_ended(self) -> None:
        synchronize()
        self.step_ends.append(time.perf_counter())

    def training_ended(self) -> None:
        self.peaks = peak_memory_mb()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.record_losses(model)

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ended()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.training_ended()


class SaveRandomState(TrainerCallback):
    """Saves torch's random state as the epoch begins: it decides the batch order and then the dropout masks."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_begin(self, args, state, control, **kwargs):
        torch.save(random_state(), self.path)


def random_state() -> dict:
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_random_state(saved: dict) -> None:
    torch.set_rng_state(saved["cpu"])
    if saved["cuda"]:
        torch.cuda.set_rng_state_all(saved["cuda"])


def peak_memory_mb() -> dict[str, float]:
    peaks = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: KiB
    if torch.cuda.is_available():
        peaks["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peaks


def timed_steps(step_ends: list[float], warmup: int) -> list[float]:
    """Seconds of each step after the first `warmup`: a step lasts from the previous step's end to its own."""
    return [end - start for start, end in zip(step_ends, step_ends[1:])][warmup:]


def step_summary(seconds: list[float]) -> dict[str, float]:
    return {"median_step_s": statistics.median(seconds), "mean_step_s": statistics.fmean(seconds),
            "timed_steps": len(seconds)}


def pool_rounds(rounds: list[dict]) -> dict:
    """One loop's measurement over all its rounds: step times pooled, the first round's losses (every round trains
    from the same state), the highest memory peaks."""
    seconds = [step for measured in rounds for step in measured["step_seconds"]]
    peaks = {key: max(measured[key] for measured in rounds) for key in rounds[0] if key.startswith("peak_")}
    return {**rounds[0], **step_summary(seconds), "step_seconds": seconds, "rounds": len(rounds), **peaks}


def round_order(round_index: int) -> tuple[str, ...]:
    """xstilts first in even rounds, bare first in odd ones."""
    return LOOPS if round_index % 2 == 0 else LOOPS[::-1]


def save_english_lang_adapter(run: OverheadRun) -> None:
    """An untrained English language adapter for `madx` (step time does not depend on its weights), saved once so that
    both loops load the same one."""
    torch.manual_seed(run.config.seed)
    host = AdapterModel(load_task_model(get_task(run.task), resolve_model(run.model_name)), run.model_name)
    name = lang_adapter_name(ZERO_SHOT_SOURCE_LANG)
    host.add(LANG, name, ZERO_SHOT_SOURCE_LANG, DEFAULT_LANG_REDUCTION_FACTOR)
    host.save(name, lang_adapter_dir(run))


def lang_adapter_dir(run: OverheadRun) -> Path:
    return run.work_dir / "lang-adapter-en"


def model_setup(run: OverheadRun) -> TaskAdapterTraining | None:
    """`target`'s `setup_model` for the method: MAD-X's adapter stack, or None (full fine-tuning)."""
    if run.method == "full":
        return None
    return TaskAdapterTraining(run.task, run.model_name, DEFAULT_TASK_REDUCTION_FACTOR, lang_adapter_dir(run))


def measure_xstilts(run: OverheadRun) -> dict:
    spec = get_task(run.task)
    resolved = resolve_model(run.model_name)
    stages = training_stages(spec, resolve_protocol(spec, "auto"), ZERO_SHOT_SOURCE_LANG)
    probe = StepProbe()
    callbacks = [probe, SaveRandomState(run.work_dir / RNG_STATE_FILE)]
    result = train(spec, resolved, load_tokenizer(resolved), stages, ZERO_SHOT_SOURCE_LANG, run.config,
                   run.work_dir / f"trainer-{run.method}", callbacks_for=lambda _: callbacks,
                   setup_model=model_setup(run))
    return probe_result(run, probe, result.trainable_params, result.total_params)


def measure_bare(run: OverheadRun) -> dict:
    """The hand-written loop; it repeats `train`'s model preparation (seed, fresh head, frozen parameters)."""
    spec, config = get_task(run.task), run.config
    resolved = resolve_model(run.model_name)
    tokenizer = load_tokenizer(resolved)
    handler = handler_for(spec)
    (stage,) = training_stages(spec, resolve_protocol(spec, "auto"), ZERO_SHOT_SOURCE_LANG)
    features = handler.encode(config.train_subset(stage.train), tokenizer, config.max_length, spec.labels)
    torch.manual_seed(config.seed)
    model = load_task_model(spec, resolved)
    setup = model_setup(run)
    if setup:
        setup(model)
    else:
        freeze_word_embeddings(model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    optimizer = torch.optim.AdamW(adamw_groups(model, config.weight_decay), lr=config.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * run.steps), run.steps)
    restore_random_state(torch.load(run.work_dir / RNG_STATE_FILE))
    loader = DataLoader(features, sampler=LengthGroupedSampler(config.batch_size, dataset=features),
                        batch_size=config.batch_size, collate_fn=handler.collator(tokenizer),
                        pin_memory=device.type == "cuda")
    probe = StepProbe()
    probe.record_losses(model)
    for batch in loader:
        loss = model(**{key: value.to(device) for key, value in batch.items()})["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        probe.step_ended()
    probe.training_ended()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return probe_result(run, probe, trainable, sum(p.numel() for p in model.parameters()))


def adamw_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters, without weight decay for biases and LayerNorm weights (the Trainer's grouping)."""
    norms = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    decays = [name not in norms and not name.endswith("bias") for name, _ in trainable]
    return [{"params": [p for (_, p), decay in zip(trainable, decays) if decay], "weight_decay": weight_decay},
            {"params": [p for (_, p), decay in zip(trainable, decays) if not decay], "weight_decay": 0.0}]


def probe_result(run: OverheadRun, probe: StepProbe, trainable: int, total: int) -> dict:
    if len(probe.step_ends) != run.steps:
        raise RuntimeError(f"{run.loop} {run.method}: {len(probe.step_ends)} optimizer steps, expected {run.steps}")
    seconds = timed_steps(probe.step_ends, run.warmup)
    return {"method": run.method, "loop": run.loop, **step_summary(seconds), "step_seconds": seconds,
            "losses": [loss.item() for loss in probe.losses], "trainable_params": trainable, "total_params": total,
            **probe.peaks}


LOOP_FUNCTIONS = {"xstilts": measure_xstilts, "bare": measure_bare}


def measure_loop(run: OverheadRun) -> dict:
    return LOOP_FUNCTIONS[run.loop](run)


def in_fresh_process(function, *args):
    """`function(*args)` in a new interpreter, so that its memory peak is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def compare_loops(xstilts: dict, bare: dict) -> dict:
    """Per method: the step-time ratio xstilts / bare and how far the first losses are apart."""
    first = min(COMPARED_LOSSES, len(xstilts["losses"]), len(bare["losses"]))
    difference = max(abs(a - b) for a, b in zip(xstilts["losses"][:first], bare["losses"][:first]))
    return {"method": xstilts["method"], "median_ratio": xstilts["median_step_s"] / bare["median_step_s"],
            "mean_ratio": xstilts["mean_step_s"] / bare["mean_step_s"], "compared_losses": first,
            "max_abs_loss_difference": difference}


def run_overhead(out_dir: Path, methods: tuple[str, ...] = METHODS, task: str = "xnli", steps: int = 30,
                 warmup: int = 5, batch_size: int = 32, max_length: int = 128,
                 model_name: str = "multilingual-e5-small", rounds: int = 2) -> dict:
    """Measures every method with both loops, writes `overhead.json` under `out_dir` and returns its content."""
    if steps - 1 <= warmup:
        raise click.BadParameter(f"--steps {steps} leaves no timed step after {warmup} warmup steps")
    if rounds < 1:
        raise click.BadParameter(f"--rounds must be at least 1, got {rounds}")
    results, comparisons = [], []
    with tempfile.TemporaryDirectory(prefix="xstilts-overhead-") as work_dir:
        for method in methods:
            runs = {loop: OverheadRun(method, loop, task, steps, warmup, batch_size, max_length, model_name,
                                      Path(work_dir)) for loop in LOOPS}
            if model_setup(runs["bare"]) and not lang_adapter_dir(runs["bare"]).exists():
                in_fresh_process(save_english_lang_adapter, runs["bare"])
            measured_rounds = {loop: [] for loop in LOOPS}
            for round_index in range(rounds):
                for loop in round_order(round_index):
                    measured_rounds[loop].append(in_fresh_process(measure_loop, runs[loop]))
            measured = {loop: pool_rounds(measured_rounds[loop]) for loop in LOOPS}
            comparison = compare_loops(measured["xstilts"], measured["bare"])
            results.extend(measured.values())
            comparisons.append(comparison)
            click.echo(f"{method}: xstilts {measured['xstilts']['median_step_s']:.3f} s/step vs bare "
                       f"{measured['bare']['median_step_s']:.3f} s/step (median), ratio "
                       f"{comparison['median_ratio']:.3f}; first {comparison['compared_losses']} losses agree within "
                       f"{comparison['max_abs_loss_difference']:.1e}")
    settings = {"task": task, "steps": steps, "warmup": warmup, "rounds": rounds, "batch_size": batch_size,
                "max_length": max_length, "model": model_name,
                "config": asdict(overhead_config(steps, batch_size, max_length))}
    payload = {"machine": machine(), "settings": settings, "results": results, "comparisons": comparisons}
    write_json(out_dir / "overhead.json", payload)
    return payload


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--methods", default=",".join(METHODS), show_default=True)
@click.option("--task", type=click.Choice(["xnli", "panx"]), default="xnli", show_default=True,
              help="English training data: XNLI (dev-split protocol) or PAN-X.")
@click.option("--steps", type=int, default=30, show_default=True, help="Optimizer steps of each loop.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Steps left out of the timing.")
@click.option("--rounds", type=int, default=2, show_default=True,
              help="Runs of each loop, in alternating order; step times are pooled over them.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True)
@click.option("--model", "model_name", default="multilingual-e5-small", show_default=True)
def main(out_dir: Path, methods: str, task: str, steps: int, warmup: int, rounds: int, batch_size: int,
         max_length: int, model_name: str) -> None:
    run_overhead(out_dir, tuple(methods.split(",")), task, steps, warmup, batch_size, max_length, model_name, rounds)


if __name__ == "__main__":
    main()

"""What the benchmark scripts share: the machine they ran on, timing, and English training without MLflow.

The scripts call the same component functions as the `target` and `evaluate` entry points (data stages, `train`,
`evaluate_language`) but log nothing to MLflow, so they also run on machines that only have the training stack.
"""

import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from transformers import TrainerCallback

from components.data import ZERO_SHOT_SOURCE_LANG, resolve_protocol, training_stages
from components.models import ResolvedModel
from components.tasks import get_task
from components.task_types import handler_for
from components.training import TrainConfig, TrainResult, train


def machine() -> dict[str, str]:
    """The hardware and library versions a number was measured with."""
    described = {"platform": platform.platform(), "cpu": cpu_model(), "cpu_native_bf16": cpu_native_bf16(),
                 "python": platform.python_version(),
                 "torch": torch.__version__, "cpu_threads": str(torch.get_num_threads()),
                 "cpu_count": str(os.cpu_count())}
    if torch.cuda.is_available():
        described["gpu"] = torch.cuda.get_device_name(0)
    import transformers

    described["transformers"] = transformers.__version__
    return described


def _cpuinfo_field(name: str) -> str | None:
    """A field of the first processor in /proc/cpuinfo (Linux); None where there is no such file or field."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == name), None)


def cpu_model() -> str:
    """The CPU's model name (Linux), e.g. "AMD EPYC": the same 2 cores differ by tens of percent between models."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_native_bf16() -> str:
    """Whether the CPU computes bf16 in hardware (AVX-512 BF16 or AMX); without it, bf16 autocast is emulated, slowly."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return "yes" if flags & {"avx512_bf16", "amx_bf16"} else "no"


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall seconds of the block (GPU work included), in the yielded dict's "seconds"."""
    synchronize()
    result = {"seconds": 0.0}
    start = time.perf_counter()
    yield result
    synchronize()
    result["seconds"] = time.perf_counter() - start


class EpochTimer(TrainerCallback):
    """Training time alone: the Trainer's runtime also counts its per-epoch evaluation and checkpointing."""

    def __init__(self):
        self.seconds = 0.0
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        synchronize()
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        synchronize()
        self.seconds += time.perf_counter() - self._start


@dataclass
class EnglishTraining:
    result: TrainResult
    protocol: str
    stage_tasks: tuple[str, ...]
    train_seconds: float
    train_tokens: int  # non-padding tokens of every training epoch, all stages
    timers: list[EpochTimer] = field(default_factory=list)


def train_english(task: str, model: ResolvedModel, tokenizer, config: TrainConfig, output_dir: Path,
                  train_source: str = "", select_holdout: int = 0, extra_callbacks: Sequence = ()
                  ) -> EnglishTraining:
    """`target`'s training, without tracking: English stages of `task` under its auto protocol; `extra_callbacks` go
    to the Trainer of every stage."""
    spec = get_task(task)
    protocol = resolve_protocol(spec, "auto")
    stages = training_stages(spec, protocol, ZERO_SHOT_SOURCE_LANG, train_source=train_source,
                             select_holdout=select_holdout)
    timers = []

    def timer_for(stage):
        timers.append(EpochTimer())
        return [timers[-1], *extra_callbacks]

    result = train(spec, model, tokenizer, stages, ZERO_SHOT_SOURCE_LANG, config, output_dir, callbacks_for=timer_for)
    tokens = sum(_token_count(stage, tokenizer, config) for stage in stages) * config.epochs
    return EnglishTraining(result, protocol, tuple(stage.task for stage in stages), sum(t.seconds for t in timers),
                           int(tokens), timers)


def _token_count(stage, tokenizer, config: TrainConfig) -> int:
    examples = stage.train[: config.max_train_examples] if config.max_train_examples else stage.train
    features = handler_for(get_task(stage.task)).encode(examples, tokenizer, config.max_length,
                                                        get_task(stage.task).labels)
    return sum(_feature_tokens(feature["input_ids"]) for feature in features)


def _feature_tokens(ids) -> int:
    return sum(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)  # multiple choice nests choices


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")

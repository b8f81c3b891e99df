"""Every benchmark this machine can run, then BENCHMARKS.md rewritten from the results.

    python -m benchmarks.run_all [--quick] [--out benchmarks/results/latest]

Runs here: framework overhead (`benchmarks.overhead`, full and MAD-X), evaluation throughput
(`benchmarks.eval_throughput`), vocabulary trimming (`benchmarks.vocab_trim`) and analysis time over synthetic runs
(`benchmarks.analysis_scale`); their JSON files go to --out. Read, not run: the GPU path (`benchmarks.gpu_path` on a
GPU machine, --gpu-results), the metric effect of bf16 evaluation on a study's trained runs
(`benchmarks.eval_precision`, --precision-results: it needs a tracking store with trained runs, e.g. the demo's),
the scheduling benchmark (`benchmarks.scheduling`, --scheduling-results: it starts a tracking server and Ray) and
the demo grid's wall and cache-hit rerun times (--demo-results, a JSON file
{"wall_s": ..., "rerun_s": ..., "machine": ...} written by whoever ran the demo); a missing file is reported as not
measured. --quick shrinks every run (a smoke test: its
numbers are not measurements).
"""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import click

from benchmarks.analysis_scale import run_analysis_scale
from benchmarks.common import machine
from benchmarks.eval_throughput import run_eval_throughput
from benchmarks.overhead import run_overhead
from benchmarks.vocab_trim import run_vocab_trim
from components.tasks import get_task

OVERHEAD_TARGET = 1.10  # xstilts / bare step time, at most
THROUGHPUT_TARGET = 3.0  # sorted, dynamically padded evaluation vs naive, at least
FULL_SIZES = {"overhead_steps": 30, "overhead_warmup": 5, "overhead_rounds": 2, "eval_examples": 512,
              "trim_examples": 640, "analysis_runs": 10_000}
QUICK_SIZES = {"overhead_steps": 6, "overhead_warmup": 1, "overhead_rounds": 1, "eval_examples": 64,
               "trim_examples": 64, "analysis_runs": 1_000}
REPO_ROOT = Path(__file__).resolve().parent.parent
NOT_MEASURED = "not measured"
MEMORY_LABELS = {"peak_rss_mb": "peak RSS (MB)", "peak_gpu_mb": "peak GPU memory (MB)"}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ratio_against(value: float, target: float, at_most: bool) -> str:
    """`1.04× (target ≤ 1.10×: met)`."""
    met = value <= target if at_most else value >= target
    return f"{value:.2f}× (target {'≤' if at_most else '≥'} {target:.2f}×: {'met' if met else 'NOT met'})"


def describe_machine(described: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in described.items())


def overhead_section(overhead: dict) -> str:
    steps = {(row["method"], row["loop"]): row for row in overhead["results"]}
    rows = [(c["method"], f"{steps[c['method'], 'xstilts']['median_step_s']:.3f}",
             f"{steps[c['method'], 'bare']['median_step_s']:.3f}",
             ratio_against(c["median_ratio"], OVERHEAD_TARGET, at_most=True), f"{c['mean_ratio']:.2f}×",
             f"{c['max_abs_loss_difference']:.1e} over {c['compared_losses']} steps")
            for c in overhead["comparisons"]]
    settings = overhead["settings"]
    return ("## Framework overhead\n\n"
            f"Seconds per optimizer step of `components.training.train` (the `target` path) vs a bare PyTorch loop on "
            f"the same batches, model init, optimizer, schedule and frozen parameters: English {settings['task']}, "
            f"batch size {settings['batch_size']}, max length {settings['max_length']}, {settings['steps']} steps "
            f"({settings['warmup']} untimed warmup steps) in each of {settings['rounds']} rounds of alternating loop "
            "order, step times pooled over the rounds; a step runs from one optimizer step's end to the "
            "next (batch fetch and collation included, the selection evaluation and checkpoint after the last step "
            "excluded). Equal first losses show both loops did the same work (`benchmarks/overhead.py`).\n\n"
            + markdown_table(("method", "xstilts s/step (median)", "bare s/step (median)", "ratio (median)",
                              "ratio (mean)", "max loss difference (abs.)"), rows))


def throughput_section(throughput: dict) -> str:
    rows = [(r["task"], r["type"], r["lang"], r["examples"], path["precision"], f"{path['examples_per_second']:.1f}",
             f"{r['naive_examples_per_second']:.1f}", ratio_against(path["speedup"], THROUGHPUT_TARGET, at_most=False),
             f"{path['max_abs_logit_difference']:.1e}") for r in throughput["results"] for path in r["sorted"]]
    return ("## Evaluation throughput\n\n"
            "Length-sorted, dynamically padded batches (`components.evaluation.predict_logits`) in fp32 (the "
            "`evaluate` default, exact) and with bf16 autocast (`evaluate -P eval_precision=bf16`) vs a naive fp32 "
            "evaluator (input order, padded to max length), same features and model, one language per task type "
            f"(batch size {throughput['settings']['batch_size']}; `benchmarks/eval_throughput.py`). The metric "
            "effect of bf16 is in the next section.\n\n"
            + markdown_table(("task", "type", "lang", "examples", "precision", "sorted examples/s", "naive examples/s",
                              "speedup", "max logit difference (abs.)"), rows))


def precision_section(precision: dict | None, source: Path) -> str:
    if precision is None:
        return f"## bf16 evaluation: effect on the metrics\n\n{NOT_MEASURED} (no {source}).\n"
    settings = precision["settings"]
    rows = [(s["task"], s["method"], s["metric"], s["target_runs"], s["languages"], f"{s['mean_abs_difference']:.2f}",
             f"{s['max_abs_difference']:.2f}", f"{s['max_abs_average_difference']:.2f}",
             f"{s['fp32_run_seconds']:.0f} s / {s['bf16_run_seconds']:.0f} s") for s in precision["summaries"]]
    return ("## bf16 evaluation: effect on the metrics\n\n"
            f"The trained runs of experiment `{settings['experiment']}` scored again in fp32 and with bf16 autocast, "
            f"on the first {settings['max_examples'] or 'all'} examples of each language they were evaluated in "
            f"(read from `{source}`, written by `python -m benchmarks.eval_precision`; measured on "
            f"{describe_machine(precision['machine'])}). Differences are bf16 minus fp32 on the task's 0-100 "
            "metric, per (run, language) and for each run's average over its languages.\n\n"
            + markdown_table(("task", "method", "metric", "target runs", "(run, language) pairs",
                              "mean abs. difference", "max abs. difference", "max abs. difference of a run's average",
                              "evaluate run fp32 / bf16"), rows))


def trim_section(trim: dict) -> str:
    rows = [("frozen" if r["freeze_word_embeddings"] else "trainable", "yes" if r["trim_vocabulary"] else "no",
             f"{r['embedding_rows']:,}", f"{r['trainable_params']:,}", f"{r['seconds_per_step']:.3f}",
             f"{r['peak_rss_mb']:,.0f}", f"{r['select_score']:.2f}") for r in trim["results"]]
    settings = trim["settings"]
    return ("## Vocabulary trimming\n\n"
            f"Full fine-tuning on English {settings['task']} ({settings['examples']} training items, one epoch at lr "
            f"{settings['config']['lr']}, batch size {settings['config']['batch_size']}, max length "
            f"{settings['config']['max_length']}), with and "
            "without `trim_vocabulary`, word embeddings frozen (the default) and trainable; each run in a process of "
            "its own (`benchmarks/vocab_trim.py`). Trainable parameters are counted on the model handed on, whose "
            "vocabulary is whole again.\n\n"
            + markdown_table(("word embeddings", "trimmed", "embedding rows in training", "trainable params", "s/step",
                              "peak RSS (MB)", f"English select {get_task(settings['task']).headline_metric}"), rows))


def methods_section(overhead: dict) -> str:
    memory_keys = [key for key in MEMORY_LABELS if key in overhead["results"][0]]
    rows = [(row["method"], f"{row['median_step_s']:.3f}", f"{row['trainable_params']:,}",
             f"{row['total_params']:,}", *(f"{row[key]:,.0f}" for key in memory_keys))
            for row in overhead["results"] if row["loop"] == "xstilts"]
    return ("## Full fine-tuning vs MAD-X\n\n"
            "The xstilts loops of the overhead benchmark; peak memory is read when the last training step ends, in a "
            "process of its own per method.\n\n"
            + markdown_table(("method", "s/step (median)", "trainable params", "total params",
                              *(MEMORY_LABELS[key] for key in memory_keys)), rows))


def gpu_section(gpu: dict | None, source: Path) -> str:
    if gpu is None:
        return f"## GPU path\n\n{NOT_MEASURED} (no {source}).\n"
    baseline = gpu["results"][0]
    rows = [(r["setting"], f"{r['train_tokens_per_second']:,.0f}",
             f"{r['train_tokens_per_second'] / baseline['train_tokens_per_second']:.2f}×",
             f"{r['eval_examples_per_second']:,.0f}",
             f"{r['eval_examples_per_second'] / baseline['eval_examples_per_second']:.2f}×",
             f"{next(iter(r['select_accuracy'].values())):.1f}", f"{r['zero_shot_average']:.1f}")
            for r in gpu["results"]]
    return ("## GPU path\n\n"
            f"Read from `{source}` (`benchmarks/gpu_path.py`), measured on {gpu['machine'].get('gpu', 'no GPU')} "
            f"({describe_machine(gpu['machine'])}); ratios against {baseline['setting']}.\n\n"
            + markdown_table(("setting", "train tokens/s", "vs " + baseline["setting"], "eval examples/s",
                              "vs " + baseline["setting"], "English select accuracy", "zero-shot average"), rows))


def analysis_section(scale: dict) -> str:
    result = scale["result"]
    return ("## Analysis time\n\n"
            f"`analysis` on {result['runs']:,} synthetic `evaluate` runs ({result['tidy_rows']:,} values), built in "
            "memory as `mlflow.search_runs` rows: the MLflow query, URIEL+ distances and report files are not "
            f"timed; bootstrap with {result['n_resamples']:,} resamples (`benchmarks/analysis_scale.py`).\n\n"
            + markdown_table(("runs", "runs -> tidy table (s)", "analyse (s)", "total (s)"),
                             [(f"{result['runs']:,}", f"{result['tidy_table_s']:.1f}", f"{result['analyse_s']:.1f}",
                               f"{result['total_s']:.1f}")]))


def demo_section(demo: dict | None, source: Path) -> str:
    """One row per executor the demo ran with (`-P executor=`), both in one session on one machine."""
    rows = [(executor, f"{run['wall_s']:.0f} s", f"{run['rerun_s']:.0f} s", f"`{run['command']}`")
            for executor, run in demo["executors"].items()] if demo else [(NOT_MEASURED,) * 4]
    where = f"measured on {describe_machine(demo['machine'])}" if demo else f"no {source} yet"
    return ("## Demo grid\n\n"
            f"The demo study (`configs/demo.yaml`) end to end, and rerun with every phase a cache hit; {where}. "
            "Wall time is the script's own count (environment set-up excluded).\n\n"
            + markdown_table(("executor", "demo wall time", "cache-hit rerun time", "command"), rows)
            + (f"\n{demo['same_results']}\n" if demo and "same_results" in demo else ""))


DISPATCH_TARGET_S = 1.0  # median seconds from a step's upstream end to its process start, at most


def scheduling_section(scheduling: dict | None, source: Path) -> str:
    if not scheduling:
        return f"## Scheduling\n\nNot measured: no {source} yet (`python -m benchmarks.scheduling`).\n"
    runs = scheduling["executors"]
    rows = []
    for executor, result in runs.items():
        latency = result["dispatch_latency_s"]
        met = "met" if latency["median"] <= DISPATCH_TARGET_S else "NOT met"
        rows.append((executor, f"{latency['median']:.2f} s (max {latency['max']:.2f} s; target ≤ "
                               f"{DISPATCH_TARGET_S:.0f} s: {met})", f"{result['upstream_end_to_launch_call_s']:.2f} s",
                     f"{result['launch_call_to_process_start_s']:.2f} s",
                     f"{result['overhead_per_step_s']['median']:.2f} s", f"{result['measured_wall_s']:.1f} s",
                     f"{result['load_average']:.1f}"))
    fast = scheduling["fast_step_s"]
    return ("## Scheduling\n\n"
            f"`main` on a {runs['local']['steps']}-step grid whose step launch starts a real process that sleeps "
            f"{fast:g} s ({scheduling['slow_arm']}: {fast * 3:g} s); nothing trains, so this measures the driver, the "
            "executor, the tracking server (PostgreSQL) and process start. Dispatch latency: from the end of a step's "
            "last upstream run to its process's start (`benchmarks/scheduling.py`; measured on "
            f"{describe_machine(scheduling['machine'])}; the load average is the machine's while it ran).\n\n"
            + markdown_table(("executor", "dispatch latency (median)", "upstream end -> launch call",
                              "launch call -> process start", "overhead per step (median)", "grid wall",
                              "load average"), rows)
            + f"\nRay's overhead per step against the local executor's: {scheduling['ray_overhead_per_step_minus_local_s']:+.2f} s. "
            f"The grid's critical path is {scheduling['critical_path_s']:g} s of sleeps against "
            f"{scheduling['sum_of_levels_s']:g} s for running it level by level (the sum of each level's longest "
            "step); a grid wall above the critical path is per-step overhead.\n")


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def benchmarks_markdown(command: str, date: str, quick: bool, overhead: dict, throughput: dict, trim: dict,
                        scale: dict, gpu_source: Path, demo_source: Path, precision_source: Path,
                        scheduling_source: Path) -> str:
    warning = ("\n**Quick run (`--quick`): tiny step and example counts, a smoke test of the benchmarks; the numbers "
               "below are not measurements.**\n" if quick else "")
    return (f"# Benchmarks\n\nRewritten by `{command}` on {date}.\n{warning}\n"
            f"Machine: {describe_machine(machine())}.\n\n"
            + "\n".join((overhead_section(overhead), throughput_section(throughput),
                         precision_section(read_json(precision_source), precision_source), methods_section(overhead),
                         trim_section(trim),
                         gpu_section(read_json(gpu_source), gpu_source), analysis_section(scale),
                         demo_section(read_json(demo_source), demo_source),
                         scheduling_section(read_json(scheduling_source), scheduling_source))))


@click.command()
@click.option("--quick", is_flag=True, help="Tiny runs: checks that every benchmark works, measures nothing.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("benchmarks/results/latest"),
              show_default=True, help="Folder for the JSON results of the benchmarks run here.")
@click.option("--gpu-results", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/h100-2026-11-27/gpu-path.json"), show_default=True)
@click.option("--demo-results", type=click.Path(path_type=Path), default=Path("benchmarks/results/demo-grid.json"),
              show_default=True)
@click.option("--precision-results", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/eval-precision.json"), show_default=True)
@click.option("--scheduling-results", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/scheduling.json"), show_default=True)
@click.option("--markdown", type=click.Path(path_type=Path), default=REPO_ROOT / "BENCHMARKS.md", show_default=True)
def main(quick: bool, out_dir: Path, gpu_results: Path, demo_results: Path, precision_results: Path,
         scheduling_results: Path, markdown: Path) -> None:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    overhead = run_overhead(out_dir, steps=sizes["overhead_steps"], warmup=sizes["overhead_warmup"],
                            rounds=sizes["overhead_rounds"])
    throughput = run_eval_throughput(out_dir, examples_per_task=sizes["eval_examples"])
    trim = run_vocab_trim(out_dir, examples=sizes["trim_examples"])
    scale = run_analysis_scale(out_dir, n_runs=sizes["analysis_runs"])
    command = " ".join(["python -m benchmarks.run_all", *sys.argv[1:]])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    markdown.write_text(benchmarks_markdown(command, date, quick, overhead, throughput, trim, scale, gpu_results,
                                            demo_results, precision_results, scheduling_results),
                  encoding="utf-8")
    click.echo(f"wrote {markdown}")


if __name__ == "__main__":
    main()

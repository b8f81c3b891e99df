"""The benchmarks' own arithmetic and formatting, on hand-made inputs whose results are worked out here."""

import pandas as pd
import pytest
import torch

from analysis.collect import tidy_table
from benchmarks.analysis_scale import synthetic_runs
from benchmarks.eval_precision import lang_adapter_options, summarize
from benchmarks.methods_table import methods_markdown
from benchmarks.overhead import (StepProbe, adamw_groups, compare_loops, pool_rounds, round_order, step_summary,
                                 timed_steps)
from benchmarks.run_all import demo_section, markdown_table, precision_section, ratio_against, scheduling_section


def test_step_times_are_the_gaps_between_step_ends_after_the_warmup():
    seconds = timed_steps([10.0, 11.0, 13.0, 16.0, 20.0], warmup=1)
    assert seconds == [2.0, 3.0, 4.0]
    assert step_summary(seconds) == {"median_step_s": 3.0, "mean_step_s": 3.0, "timed_steps": 3}


def test_rounds_alternate_the_loop_order_and_pool_step_times_keeping_the_first_losses_and_the_highest_peak():
    assert [round_order(index) for index in range(3)] == [("xstilts", "bare"), ("bare", "xstilts"), ("xstilts", "bare")]
    first = {"method": "madx", "loop": "bare", "step_seconds": [1.0, 3.0], "losses": [0.7], "peak_rss_mb": 900.0}
    second = {"method": "madx", "loop": "bare", "step_seconds": [2.0, 10.0], "losses": [0.6], "peak_rss_mb": 950.0}
    pooled = pool_rounds([first, second])
    assert pooled["step_seconds"] == [1.0, 3.0, 2.0, 10.0]
    assert (pooled["median_step_s"], pooled["mean_step_s"], pooled["timed_steps"]) == (2.5, 4.0, 4)
    assert (pooled["losses"], pooled["peak_rss_mb"], pooled["rounds"]) == ([0.7], 950.0, 2)


def test_loop_comparison_divides_step_times_and_compares_the_first_losses():
    xstilts = {"method": "full", "median_step_s": 1.1, "mean_step_s": 1.2, "losses": [1.0, 0.9, 0.8]}
    bare = {"method": "full", "median_step_s": 1.0, "mean_step_s": 1.0, "losses": [1.0, 0.9005, 0.7]}
    comparison = compare_loops(xstilts, bare)
    assert comparison["median_ratio"] == pytest.approx(1.1)
    assert comparison["mean_ratio"] == pytest.approx(1.2)
    assert comparison["compared_losses"] == 3
    assert comparison["max_abs_loss_difference"] == pytest.approx(0.1)


def test_bare_optimizer_groups_skip_frozen_parameters_and_decay_neither_biases_nor_layer_norms():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 1, bias=False))
    model[2].weight.requires_grad_(False)
    decayed, undecayed = adamw_groups(model, weight_decay=0.01)
    assert [p is model[0].weight for p in decayed["params"]] == [True]
    assert decayed["weight_decay"] == 0.01
    assert {id(p) for p in undecayed["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert undecayed["weight_decay"] == 0.0


class LossModule(torch.nn.Module):
    def forward(self, x):
        return {"loss": x.sum()}


def test_probe_keeps_training_losses_only():
    module, probe = LossModule(), StepProbe()
    probe.record_losses(module)
    module.train()(torch.tensor([1.0, 2.0]))
    module.eval()(torch.tensor([5.0]))
    assert [loss.item() for loss in probe.losses] == [3.0]


def test_ratio_against_a_target_says_whether_it_is_met():
    assert ratio_against(1.04, 1.10, at_most=True) == "1.04× (target ≤ 1.10×: met)"
    assert ratio_against(1.25, 1.10, at_most=True) == "1.25× (target ≤ 1.10×: NOT met)"
    assert ratio_against(2.5, 3.0, at_most=False) == "2.50× (target ≥ 3.00×: NOT met)"


def test_markdown_table():
    assert markdown_table(("a", "b"), [(1, "x"), (2, "y")]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | y |\n"


def test_demo_section_reads_the_demo_timings_or_says_not_measured(tmp_path):
    assert "| not measured | not measured | not measured | not measured |" in demo_section(None, tmp_path / "d.json")
    measured = demo_section({"executors": {"local": {"wall_s": 1234.4, "rerun_s": 12.6, "command": "bash demo.sh"},
                                           "ray": {"wall_s": 999.5, "rerun_s": 50.0, "command": "bash demo.sh -P x"}},
                             "machine": {"gpu": "H100"}}, tmp_path)
    assert "| local | 1234 s | 13 s | `bash demo.sh` |\n| ray | 1000 s | 50 s | `bash demo.sh -P x` |" in measured
    assert "gpu H100" in measured


def test_synthetic_runs_fill_the_grid_in_order_and_collect_accepts_every_value():
    # The first 12 runs: full, model-a, no intermediate task; xnli (15 languages) and pawsx (7) for seeds 1-5, then
    # panx (48) for seeds 1-2; one metric each.
    runs = synthetic_runs(12)
    tidy, problems = tidy_table(runs)
    assert problems.empty
    assert len(tidy) == 5 * 15 + 5 * 7 + 2 * 48
    assert list(runs["params.task"]) == ["xnli"] * 5 + ["pawsx"] * 5 + ["panx"] * 2
    assert set(runs["params.intermediate_task"]) == {"none"}


def test_methods_table_puts_each_target_run_in_a_column_with_averages_worked_out_here():
    start = pd.Timestamp("2026-12-05 10:00:00")
    targets = pd.DataFrame([
        {"run_id": "t1", "params.method": "full", "params.lr": "1e-4", "params.task_reduction_factor": "16",
         "params.freeze_word_embeddings": "true", "params.trainable_params": "21494407",
         "params.total_params": "117508615", "metrics.select/panx/en/f1": 40.0, "metrics.peak_rss_mb": 3000.4,
         "start_time": start, "end_time": start + pd.Timedelta(seconds=55)},
        {"run_id": "t2", "params.method": "full", "params.lr": "1e-4", "params.task_reduction_factor": "16",
         "params.freeze_word_embeddings": "false", "params.trainable_params": "117508615",
         "params.total_params": "117508615", "metrics.select/panx/en/f1": 42.5, "metrics.peak_rss_mb": 4100.0,
         "start_time": start + pd.Timedelta(minutes=1), "end_time": start + pd.Timedelta(seconds=130)},
        {"run_id": "t3", "params.method": "madx", "params.lr": "0.00125", "params.task_reduction_factor": "2",
         "params.freeze_word_embeddings": "true", "params.trainable_params": "1779079",
         "params.total_params": "121135687", "metrics.select/panx/en/f1": 41.0, "metrics.peak_rss_mb": 3100.0,
         "start_time": start + pd.Timedelta(minutes=3), "end_time": start + pd.Timedelta(minutes=4)},
    ])
    evaluates = pd.DataFrame([
        {"params.train_run_id": "t1", "metrics.eval/panx/en/f1": 80.0, "metrics.eval/panx/sw/f1": 40.0,
         "metrics.eval/panx/yo/f1": 20.0, "metrics.eval/panx/de/f1": 60.0,
         "params.lang_adapter/panx/sw": "none (method task_adapter)"},  # as a task_adapter run logs it
        {"params.train_run_id": "t2", "metrics.eval/panx/en/f1": 82.0, "metrics.eval/panx/sw/f1": 44.0,
         "metrics.eval/panx/yo/f1": 10.0, "metrics.eval/panx/de/f1": 62.0},
        {"params.train_run_id": "t3", "metrics.eval/panx/en/f1": 70.0, "metrics.eval/panx/sw/f1": 50.0,
         "metrics.eval/panx/yo/f1": 30.0, "metrics.eval/panx/de/f1": 50.0,
         "params.lang_adapter/panx/en": "a" * 32, "params.lang_adapter/panx/sw": "b" * 32,
         "params.lang_adapter/panx/yo": "fallback source " + "a" * 32,
         "params.lang_adapter/panx/de": "fallback source " + "a" * 32},
        # Listed last but started first (search_runs lists the newest first): superseded by the row above.
        {"params.train_run_id": "t3", "metrics.eval/panx/en/f1": 10.0, "start_time": start + pd.Timedelta(minutes=4)},
    ]).assign(start_time=lambda frame: frame["start_time"].fillna(start + pd.Timedelta(minutes=5)))
    markdown = methods_markdown(evaluates, targets, "panx", ("sw", "yo", "qu"))
    lines = markdown.splitlines()
    # Only freeze_word_embeddings differs within a method: lr and reduction factor differ across methods only.
    assert lines[0] == ("|  | full freeze_word_embeddings true | full freeze_word_embeddings false "
                        "| madx freeze_word_embeddings true |")
    assert "| trainable / total parameters | 21,494,407 / 117,508,615 | 117,508,615 / 117,508,615 " \
           "| 1,779,079 / 121,135,687 |" in lines
    # (80+40+20+60)/4 = 50, without en (40+20+60)/3 = 40; (82+44+10+62)/4 = 49.5, (44+10+62)/3 = 38.67;
    # (70+50+30+50)/4 = 50, (50+30+50)/3 = 43.33.
    assert "| average f1, 4 languages (without en) | 50.00 (40.00) | 49.50 (38.67) | 50.00 (43.33) |" in lines
    # qu was not scored: the low-resource average is over sw and yo.
    assert "| low-resource average (sw, yo) | 30.00 | 27.00 | 40.00 |" in lines
    assert "| languages on their own language adapter | – | – | en, sw |" in lines
    assert "| target wall time | 55 s | 70 s | 60 s |" in lines
    assert "| target peak RSS | 3,000 MB | 4,100 MB | 3,100 MB |" in lines
    # Low-resource languages first, then the others in code order.
    per_language = lines[lines.index("| panx f1 | full freeze_word_embeddings true | full freeze_word_embeddings "
                                     "false | madx freeze_word_embeddings true |") + 2:]
    assert [line.split(" | ")[0] for line in per_language] == ["| sw (low-resource)", "| yo (low-resource)", "| de",
                                                               "| en"]


def precision_row(run: str, method: str, lang: str, fp32: float, bf16: float, seconds: tuple[float, float]) -> dict:
    return {"train_run_id": run, "task": "panx", "method": method, "intermediate_task": "none", "lang": lang,
            "metric": "f1", "fp32": fp32, "bf16": bf16, "fp32_run_seconds": seconds[0], "bf16_run_seconds": seconds[1]}


def test_precision_summary_per_task_and_method_worked_out_by_hand(tmp_path):
    rows = [precision_row("a", "full", "de", 50.0, 50.5, (10.0, 4.0)),
            precision_row("a", "full", "sw", 40.0, 39.0, (10.0, 4.0)),
            precision_row("b", "full", "de", 60.0, 60.0, (20.0, 6.0)),
            precision_row("b", "full", "sw", 30.0, 31.0, (20.0, 6.0)),
            precision_row("c", "madx", "de", 20.0, 20.25, (8.0, 5.0))]
    full, madx = summarize(rows)
    # |differences| 0.5, 1, 0, 1; run averages move by (0.5 - 1) / 2 = -0.25 (a) and (0 + 1) / 2 = 0.5 (b)
    assert (full["task"], full["method"], full["target_runs"], full["languages"]) == ("panx", "full", 2, 4)
    assert full["mean_abs_difference"] == pytest.approx(0.625)
    assert full["max_abs_difference"] == pytest.approx(1.0)
    assert full["max_abs_average_difference"] == pytest.approx(0.5)
    assert (full["fp32_run_seconds"], full["bf16_run_seconds"]) == (15.0, 5.0)
    assert (madx["method"], madx["max_abs_difference"], madx["fp32_run_seconds"]) == ("madx", 0.25, 8.0)
    assert "not measured" in precision_section(None, tmp_path / "eval-precision.json")


def test_language_adapters_of_a_rescored_run_come_from_its_per_language_params():
    source, swahili = "a" * 32, "b" * 32
    evaluate = pd.Series({"params.task": "panx", "params.langs": "en,sw,yo,de", "params.lang_adapter_run_id": source,
                          "params.lang_adapter/panx/en": source, "params.lang_adapter/panx/sw": swahili,
                          "params.lang_adapter/panx/yo": f"fallback source {source}",
                          "params.lang_adapter/panx/de": f"fallback source {source}"})
    assert lang_adapter_options(evaluate) == (swahili, "source")
    full = pd.Series({"params.task": "xnli", "params.langs": "en,de", "params.lang_adapter/xnli/en": "none (method full)",
                      "params.lang_adapter/xnli/de": float("nan")})
    assert lang_adapter_options(full) == ("", "")


def test_scheduling_section_says_whether_the_dispatch_target_is_met(tmp_path):
    def executor(median):
        return {"steps": 28, "dispatch_latency_s": {"median": median, "max": 2.5, "n": 20},
                "upstream_end_to_launch_call_s": 0.2, "launch_call_to_process_start_s": 0.3,
                "overhead_per_step_s": {"median": 0.75}, "measured_wall_s": 30.04, "load_average": 1.25}

    measured = scheduling_section({"machine": {"cpu": "EPYC"}, "fast_step_s": 4.0, "slow_arm": "the none arm",
                                   "critical_path_s": 16.0, "sum_of_levels_s": 20.0,
                                   "ray_overhead_per_step_minus_local_s": 0.5,
                                   "executors": {"local": executor(0.4), "ray": executor(1.5)}}, tmp_path)
    assert "| local | 0.40 s (max 2.50 s; target ≤ 1 s: met) | 0.20 s | 0.30 s | 0.75 s | 30.0 s | 1.2 |" in measured
    assert "| ray | 1.50 s (max 2.50 s; target ≤ 1 s: NOT met)" in measured
    assert "sleeps 4 s (the none arm: 12 s)" in measured and "+0.50 s" in measured
    assert "16 s of sleeps against 20 s" in measured
    assert "Not measured" in scheduling_section(None, tmp_path / "scheduling.json")

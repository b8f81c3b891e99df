"""The benchmarks' own arithmetic and formatting, on hand-made inputs whose results are worked out here."""

import pytest
import torch

from analysis.collect import tidy_table
from benchmarks.analysis_scale import synthetic_runs
from benchmarks.overhead import StepProbe, adamw_groups, compare_loops, step_summary, timed_steps
from benchmarks.run_all import demo_section, markdown_table, ratio_against


def test_step_times_are_the_gaps_between_step_ends_after_the_warmup():
    seconds = timed_steps([10.0, 11.0, 13.0, 16.0, 20.0], warmup=1)
    assert seconds == [2.0, 3.0, 4.0]
    assert step_summary(seconds) == {"median_step_s": 3.0, "mean_step_s": 3.0, "timed_steps": 3}


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
    assert "| not measured | not measured |" in demo_section(None, tmp_path / "demo-grid.json")
    measured = demo_section({"wall_s": 1234.4, "rerun_s": 12.6, "machine": {"gpu": "H100"}}, tmp_path)
    assert "| 1234 s | 13 s |" in measured and "gpu H100" in measured


def test_synthetic_runs_fill_the_grid_in_order_and_collect_accepts_every_value():
    # The first 12 runs: full, model-a, no intermediate task; xnli (15 languages) and pawsx (7) for seeds 1-5, then
    # panx (48) for seeds 1-2; one metric each.
    runs = synthetic_runs(12)
    tidy, problems = tidy_table(runs)
    assert problems.empty
    assert len(tidy) == 5 * 15 + 5 * 7 + 2 * 48
    assert list(runs["params.task"]) == ["xnli"] * 5 + ["pawsx"] * 5 + ["panx"] * 2
    assert set(runs["params.intermediate_task"]) == {"none"}

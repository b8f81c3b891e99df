"""`main -P plan=true` (`components.plan`): cached steps, and estimates that equal hand arithmetic on synthetic
FINISHED runs written here into a temporary SQLite store; nothing trains and no run is created."""

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from components.executors import Resources
from components.grid import Grid, Step, StepRef, cache_key
from components.plan import CPU, GPU, Store, device_hours, plan, report
from pipelines import main

VERSION = "code-version-of-the-test"
ON_CPU = {entry: Resources(gpus=0) for entry in ("lang_adapter", "intermediate", "target", "evaluate")}
ON_GPU = {entry: Resources(gpus=1) for entry in ON_CPU}


def finished_run(experiment_id: str, phase: str, seconds: float, params: dict, metrics: dict,
                 tags: dict | None = None) -> str:
    """A FINISHED run that took `seconds` of wall time, as a step run logs it."""
    client = MlflowClient()
    run = client.create_run(experiment_id, start_time=1_000_000, tags={"xlt.phase": phase, **(tags or {})})
    for name, value in params.items():
        client.log_param(run.info.run_id, name, value)
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=1_000_000 + int(seconds * 1000))
    return run.info.run_id


def panx_training(model: str, n_train: int, runtime: float, flos: float, wall: float, gpu: bool = False) -> tuple:
    params = {"task": "panx", "model": model, "method": "full", "protocol": "auto", "source_lang": "en",
              "epochs": "1", "n_train_examples": str(n_train), "n_train_available": "20000"}
    metrics = {"train/panx/train_runtime": runtime, "train/panx/total_flos": flos, "peak_rss_mb": 900.0,
               **({"peak_gpu_mb": 5000.0} if gpu else {})}
    return "target", wall, params, metrics


def panx_evaluation(model: str, wall: float, scored: dict[str, int]) -> tuple:
    params = {"task": "panx", "model": model, "method": "full", "data_protocol": "target-dev",
              "max_eval_examples": "0", "retrieval_task": ""}
    return "evaluate", wall, params, {f"eval_examples/panx/{lang}/n": n for lang, n in scored.items()}


@pytest.fixture
def experiment_id(tracking_store):
    return MlflowClient().create_experiment("plan-test")


def store_of(experiment_id: str, *runs: tuple) -> tuple[Store, list[str]]:
    ids = [finished_run(experiment_id, *run) for run in runs]
    return Store.read(experiment_id), ids


def panx_cell(model: str, max_length: int = 128, langs: str = "de,sw", cap: int = 10) -> list[Step]:
    target = Step("target", {"model": model, "task": "panx", "epochs": 2, "max_train_examples": 100,
                             "max_length": max_length, "method": "full"}, "target panx", "t")
    evaluate = Step("evaluate", {"train_run_id": StepRef(("t",)), "langs": langs, "max_eval_examples": cap},
                    "evaluate panx", "e")
    return [target, evaluate]


def test_measured_estimates_equal_hand_arithmetic_and_use_only_runs_of_the_step_kind_and_device(experiment_id):
    store, ids = store_of(
        experiment_id,
        panx_training("m", n_train=50, runtime=10.0, flos=1e9, wall=15.0),
        panx_training("m", n_train=30, runtime=9.0, flos=2e9, wall=12.0),
        panx_training("m", n_train=50, runtime=1.0, flos=1e9, wall=2.0, gpu=True),  # another device kind
        panx_training("other-model", n_train=50, runtime=99.0, flos=1e9, wall=100.0),  # another model
        panx_evaluation("m", wall=20.0, scored={"de": 30, "sw": 10}))
    planned = plan(Grid(panx_cell("m"), []), ON_CPU, VERSION, set(), store)

    target, evaluate = planned
    # Training: mean overhead (15 - 10, 12 - 9) = 4 s, plus (10 + 9) s / (50 + 30) items per item, times
    # min(cap 100, size 20,000) x 2 epochs = 200 items.
    assert (target.status, target.device, target.estimate.kind) == ("to run", CPU, "measured")
    assert target.estimate.seconds == pytest.approx(4 + 19 / 80 * 200)
    assert set(target.estimate.runs) == set(ids[:2])
    # Evaluation: 20 s over 40 scored items = 0.5 s/item; de: min(cap 10, 30), sw: min(10, 10) = 20 items.
    assert evaluate.estimate.seconds == pytest.approx(0.5 * 20)
    assert evaluate.estimate.runs == (ids[4],)
    assert device_hours(planned) == pytest.approx({CPU: (4 + 19 / 80 * 200 + 10) / 3600, GPU: 0})


def test_a_model_without_runs_is_estimated_from_its_parameters_and_the_flop_rate_of_the_device(experiment_id,
                                                                                               tiny_model_dir):
    store, ids = store_of(
        experiment_id,
        panx_training("m", n_train=50, runtime=10.0, flos=1e9, wall=15.0),
        panx_training("m", n_train=30, runtime=9.0, flos=2e9, wall=12.0),
        panx_training("m", n_train=50, runtime=1.0, flos=5e9, wall=2.0, gpu=True),
        panx_evaluation("m", wall=20.0, scored={"de": 30, "sw": 10}))
    planned = plan(Grid(panx_cell(str(tiny_model_dir), max_length=32, langs="de", cap=0), []), ON_CPU, VERSION,
                   set(), store)

    # The tiny encoder (hidden 32, 2 layers, feed-forward 37) without its embeddings: per layer q, k, v and output
    # projections 4 x (32 x 32 + 32), feed-forward 32 x 37 + 37 and 37 x 32 + 32, two LayerNorms 2 x 64; then the
    # embeddings' LayerNorm 64 and the pooler 32 x 32 + 32.
    parameters = 2 * (4 * (32 * 32 + 32) + (32 * 37 + 37) + (37 * 32 + 32) + 2 * 64) + 64 + (32 * 32 + 32)
    cpu_rate = (1e9 + 2e9) / (10 + 9)  # FLOPs per second of the CPU training runs, whatever their model
    target, evaluate = planned
    assert target.estimate.kind == "flop-rate"
    assert target.estimate.seconds == pytest.approx(6 * parameters * (100 * 2) * 32 / cpu_rate)
    assert set(target.estimate.runs) == set(ids[:2])
    # de scored uncapped: all 30 items, forward only.
    assert evaluate.estimate.kind == "flop-rate"
    assert evaluate.estimate.seconds == pytest.approx(2 * parameters * 30 * 32 / cpu_rate)
    assert "flop-rate" in report(planned) and "parameters (its config.json)" in report(planned)


def test_a_step_with_nothing_to_estimate_from_is_listed_as_such(experiment_id, tiny_model_dir):
    store, _ = store_of(experiment_id, panx_training("m", n_train=50, runtime=10.0, flos=1e9, wall=15.0))
    on_gpu = plan(Grid(panx_cell(str(tiny_model_dir)), []), ON_GPU, VERSION, set(), store)
    assert [(item.device, item.estimate.kind, item.estimate.seconds) for item in on_gpu] == [(GPU, "none", None)] * 2
    assert "no finished training run on GPU" in on_gpu[0].estimate.basis
    # XNLI under the standard protocol trains on MNLI, which neither the store nor the bundle holds (nor the Hub
    # cache of this offline test): its size is unknown, and there is no cap.
    unsized = Step("target", {"model": "m", "task": "xnli", "protocol": "standard", "method": "full"}, "t xnli", "x")
    [item] = plan(Grid([unsized], []), ON_CPU, VERSION, set(), store)
    assert (item.estimate.kind, item.estimate.seconds) == ("none", None)
    assert "training-set size unknown" in item.estimate.basis
    summary = report([*on_gpu, item]).splitlines()[-3:]
    assert summary[0] == "plan: 3 steps: 0 cached, 3 to run"
    assert summary[1].startswith("  CPU-hours 0.00 for 0 of 1 steps on CPU: 0 measured, 0 from the FLOP rate, 1 with")
    assert summary[2].startswith("  GPU-hours 0.00 for 0 of 2 steps on GPU: 0 measured, 0 from the FLOP rate, 2 with")


def test_a_step_with_a_finished_run_of_its_cache_key_is_cached_and_its_downstream_steps_use_its_run_id(
        experiment_id):
    intermediate = Step("intermediate", {"model": "m", "task": "anli", "method": "full"}, "intermediate anli", "i")
    target = Step("target", {"model": "m", "task": "panx", "init_run_id": StepRef(("i",)), "method": "full"},
                  "target panx", "t")
    evaluate = Step("evaluate", {"train_run_id": StepRef(("t",)), "langs": "de"}, "evaluate panx", "e")
    intermediate_run = finished_run(experiment_id, "intermediate", 5.0, {}, {}, {
        "xlt.cache_key": cache_key("intermediate", {"model": "m", "task": "anli", "method": "full"}, VERSION)})
    target_run = finished_run(experiment_id, "target", 5.0, {}, {}, {"xlt.cache_key": cache_key(
        "target", {"model": "m", "task": "panx", "init_run_id": intermediate_run, "method": "full"}, VERSION)})
    stale = finished_run(experiment_id, "target", 5.0, {}, {}, {"xlt.cache_key": cache_key(
        "target", {"model": "m", "task": "panx", "init_run_id": intermediate_run, "method": "full"}, "older code")})
    grid = Grid([intermediate, target, evaluate], [])

    planned = plan(grid, ON_CPU, VERSION, set(), Store.read(experiment_id))
    assert [(item.status, item.run_id) for item in planned] == [
        ("cached", intermediate_run), ("cached", target_run), ("to run", "")]
    assert stale not in report(planned)
    forced = plan(grid, ON_CPU, VERSION, {"target"}, Store.read(experiment_id))
    assert [item.status for item in forced] == ["cached", "to run", "to run"]
    # Another experiment's finished runs are not this study's cache.
    assert [item.status for item in plan(grid, ON_CPU, VERSION, set(), Store.read("0"))] == ["to run"] * 3


def test_main_plans_without_creating_a_run_and_a_config_error_is_still_the_config_error(tracking_store,
                                                                                       tiny_model_dir, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(f"model: {tiny_model_dir}\nseeds: [3]\nmethods: [full]\n"
                     "targets: [{task: xnli, protocol: dev-split, epochs: 1, max_length: 64, "
                     "evaluate: {langs: 'en,sw'}}]\n", encoding="utf-8")
    result = CliRunner().invoke(main.main, ["--config", str(study), "--plan", "true"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "plan: 2 steps: 0 cached, 2 to run" in result.output
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []

    study.write_text(study.read_text(encoding="utf-8") + "targetz: []\n", encoding="utf-8")
    result = CliRunner().invoke(main.main, ["--config", str(study), "--plan", "true"])
    assert result.exit_code == 2
    assert "xstilts: error:" in result.output and "targetz" in result.output
    assert "plan:" not in result.output
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []

"""Multi-task intermediate training: the mixing sampler, the shared-encoder model, and the phase end to end."""

import json
import math
import re

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from transformers import AutoTokenizer

from components.grid import expand, read_config
from components.models import load_model, load_tokenizer, resolve_model
from components.settings import DATA_ROOT_ENV, PROJECT_ROOT, data_root
from components.options import parameter_names
from components.multitask import MultiTaskModel, TaskBatchSampler, TaskCollator, load_mixture, mixing_weights
from components.tasks import get_task
from components.task_types import handler_for
from components.training import TrainConfig, load_task_model
from pipelines import intermediate, target
from pipelines.main import STEP_ENTRIES

FAST = ["--epochs", "1", "--batch-size", "16", "--max-length", "64"]


def test_mixing_weights_are_proportional_to_capped_sizes():
    sizes = {"anli": 2700, "sst2": 60614, "siqa": 1700}
    assert mixing_weights(sizes, 0) == pytest.approx({"anli": 2700 / 65014, "sst2": 60614 / 65014,
                                                      "siqa": 1700 / 65014})
    assert mixing_weights(sizes, 5000) == pytest.approx({"anli": 2700 / 9400, "sst2": 5000 / 9400,
                                                         "siqa": 1700 / 9400})


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def task_of(index):
    """Features 0-99 are task a's, 100-129 task b's (the order of the sizes)."""
    return "a" if index < 100 else "b"


@pytest.mark.parametrize("cap, batches_per_task, examples_per_task", [
    (0, {"a": 10, "b": 3}, {"a": 100, "b": 30}),  # 100 / 10 and 30 / 10 batches of 10
    (50, {"a": 5, "b": 3}, {"a": 50, "b": 30}),   # a is capped at 50 examples an epoch; b (30) is under the cap
])
def test_sampler_batches_hold_one_task_in_capped_proportion(cap, batches_per_task, examples_per_task):
    sampler = TaskBatchSampler({"a": 100, "b": 30}, cap, batch_size=10, seed=0)
    batches = epoch_batches(sampler, 0)
    assert len(batches) == len(sampler) == sum(batches_per_task.values())
    assert sampler.epoch_examples == sum(examples_per_task.values())
    assert all(len({task_of(index) for index in batch}) == 1 for batch in batches)
    assert {task: sum(task_of(batch[0]) == task for batch in batches) for task in "ab"} == batches_per_task
    drawn = [index for batch in batches for index in batch]
    assert len(drawn) == len(set(drawn))  # no feature twice in an epoch
    assert {task: sum(task_of(index) == task for index in drawn) for task in "ab"} == examples_per_task


def test_sampler_draws_anew_each_epoch_and_keeps_the_last_partial_batch():
    sampler = TaskBatchSampler({"a": 100, "b": 30}, 50, batch_size=10, seed=0)
    first, second = epoch_batches(sampler, 0), epoch_batches(sampler, 1)
    assert first != second and first == epoch_batches(sampler, 0)
    assert {i for batch in first for i in batch if i < 100} != {i for batch in second for i in batch if i < 100}
    uneven = epoch_batches(TaskBatchSampler({"a": 25, "b": 7}, 0, batch_size=10, seed=0), 0)
    assert sorted(len(batch) for batch in uneven) == [5, 7, 10, 10]


FOUR_TYPES = {
    "xnli": [{"text_a": "a man sleeps", "text_b": "nobody sleeps", "label": "contradiction", "lang": "en"},
             {"text_a": "a man sleeps", "text_b": "a person rests", "label": "entailment", "lang": "en"}],
    "copa": [{"context": "the glass fell", "question": "What happened as a result?",
              "choices": ["it broke", "it sang"], "label": 0, "lang": "en"}] * 2,
    "udpos": [{"tokens": ["the", "man", "sleeps"], "tags": ["DET", "NOUN", "VERB"], "lang": "en"}] * 2,
    "xquad": [{"id": "q1", "context": "The man sleeps in the house.", "question": "Where does the man sleep?",
               "answers": {"text": ["in the house"], "answer_start": [15]}, "lang": "en"}] * 2,
}


def head_parameters(model):
    return [p for name, p in model.named_parameters() if not name.startswith(model.base_model_prefix + ".")]


def test_one_shared_encoder_and_every_head_learns_from_its_own_batches(tiny_model_dir):
    init = resolve_model(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    specs = {name: get_task(name) for name in FOUR_TYPES}
    model = MultiTaskModel(load_model(init), {name: load_task_model(spec, init) for name, spec in specs.items()})
    encoders = {id(task_model.base_model) for task_model in model.task_models.values()}
    assert encoders == {id(model.encoder)}
    shared = model.encoder.embeddings.word_embeddings.weight
    assert all(task_model.base_model.embeddings.word_embeddings.weight is shared
               for task_model in model.task_models.values())
    n_heads = sum(p.numel() for task_model in model.task_models.values() for p in head_parameters(task_model))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.encoder.parameters()) + n_heads

    collate = TaskCollator({name: handler_for(spec).collator(tokenizer) for name, spec in specs.items()})
    for name, spec in specs.items():
        features = handler_for(spec).encode(FOUR_TYPES[name], tokenizer, 64, spec.labels)
        model.zero_grad(set_to_none=True)
        model(**collate([(name, feature) for feature in features])).loss.backward()
        for other, task_model in model.task_models.items():
            grads = [p.grad for p in head_parameters(task_model)]
            if other == name:  # (a multiple-choice bias gets a zero gradient: it shifts every choice alike)
                assert None not in grads and sum(grad.abs().sum() for grad in grads) > 0, name
            else:
                assert all(grad is None for grad in grads), (name, other)
        assert shared.grad is not None and shared.grad.abs().sum() > 0


def invoke(command, args):
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def small_bundle(tmp_path, monkeypatch):
    """The first lines of real bundle files as a data root of its own, so that a run trains for seconds: XNLI under
    the standard protocol (60 MNLI-style training pairs, 12 English dev pairs) and COPA (24 training, 10 dev items);
    SocialIQA's dev pool whole (XCOPA trains on it first); TyDiQA-GoldP English questions as SQuAD (12 train, 6 dev)."""
    xd = "xtreme/download"
    for source, destination, lines in [("xnli/dev-en.tsv", "xnli/train-en.tsv", slice(0, 60)),
                                       ("xnli/dev-en.tsv", "xnli/dev-en.tsv", slice(60, 72)),
                                       ("xcopa/train-en.jsonl", "xcopa/train-en.jsonl", slice(0, 24)),
                                       ("xcopa/val-en.jsonl", "xcopa/val-en.jsonl", slice(0, 10)),
                                       ("siqa/socialIQa_v1.4_dev.jsonl", "siqa/socialIQa_v1.4_dev.jsonl", slice(None))]:
        text = (data_root() / xd / source).read_text(encoding="utf-8").splitlines(keepends=True)[lines]
        (tmp_path / "data" / xd / destination).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / xd / destination).write_text("".join(text), encoding="utf-8")
    tydiqa = json.loads((data_root() / xd / "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json").read_text(
        encoding="utf-8"))["data"]  # one question per article
    (tmp_path / "data" / xd / "squad").mkdir()
    for name, articles in [("train-v1.1.json", tydiqa[:12]), ("dev-v1.1.json", tydiqa[12:18])]:
        (tmp_path / "data" / xd / "squad" / name).write_text(json.dumps({"data": articles}), encoding="utf-8")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "data"))


def test_two_task_intermediate_run_hands_on_an_encoder_a_target_run_starts_from(tracking_store, tiny_model_dir,
                                                                                   small_bundle):
    model = ["--model", str(tiny_model_dir), "--protocol", "standard"]
    # 60 XNLI items capped at 40 and 24 COPA items: weights 40/64 and 24/64.
    code, out = invoke(intermediate.main, ["--task", "xnli,copa", "--task-size-cap", "40", *model, *FAST])
    assert code == 0, out
    run_id = out.split("intermediate run ")[1].split()[0]
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert (params["task"], params["task_size_cap"]) == ("xnli,copa", "40")
    assert (params["sampling_weight/xnli"], params["sampling_weight/copa"]) == ("0.6250", "0.3750")
    assert (params["n_train_examples/xnli"], params["n_train_examples/copa"]) == ("60", "24")
    assert (params["n_select_examples/xnli"], params["n_select_examples/copa"]) == ("12", "10")
    assert params["train_source/xnli"] == "mnli" and params["select_source/copa"] == "dev"
    assert metrics["select/multitask/en/headline_mean"] == pytest.approx(
        (metrics["select/xnli/en/accuracy"] + metrics["select/copa/en/accuracy"]) / 2)
    steps = [m.step for m in MlflowClient().get_metric_history(run_id, "select/copa/en/accuracy")]
    epoch_steps = math.ceil(40 / 16) + math.ceil(24 / 16)  # one epoch: 3 XNLI batches and 2 COPA batches
    assert steps == [epoch_steps]  # one epoch: its evaluation is the selected one, logged once
    trained = metrics["train/multitask/train_samples_per_second"] * metrics["train/multitask/train_runtime"]
    assert trained == pytest.approx(40 + 24, rel=0.02)  # the Trainer counts an epoch's examples, not the pool
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/model/config.json")["architectures"] == ["XLMRobertaModel"]

    code, out = invoke(target.main, ["--task", "xnli", "--init-run-id", run_id, *model, *FAST])
    assert code == 0, out
    target_run = MlflowClient().get_run(out.split("target run ")[1].split()[0])
    assert target_run.info.status == "FINISHED"
    assert target_run.data.params["intermediate_task"] == "xnli,copa"


def test_logged_sizes_are_those_used_after_the_caps_with_the_available_ones_beside(tiny_model_dir, small_bundle):
    tokenizer = load_tokenizer(resolve_model(str(tiny_model_dir)))
    config = TrainConfig(max_length=64, max_train_examples=50, max_select_examples=11)
    params = load_mixture(["xnli", "copa"], "standard", "en", tokenizer, config, 0).params()
    keys = ("n_train_examples", "n_train_available", "n_select_examples", "n_select_available")
    # The small bundle: XNLI 60 train and 12 dev items, capped at 50 and 11; COPA 24 and 10, under the caps.
    assert {task: tuple(params[f"{key}/{task}"] for key in keys) for task in ("xnli", "copa")} == \
        {"xnli": ("50", "60", "11", "12"), "copa": ("24", "24", "10", "10")}


def test_extractive_qa_mixes_with_classification(tracking_store, tiny_model_dir, small_bundle):
    # A long context makes many windows: the cap keeps the epoch at 2 batches of SQuAD windows.
    code, out = invoke(intermediate.main, ["--task", "xnli,squad", "--task-size-cap", "32", "--model",
                                           str(tiny_model_dir), "--protocol", "standard", *FAST])
    assert code == 0, out
    run = MlflowClient().get_run(out.split("intermediate run ")[1].split()[0])
    assert run.info.status == "FINISHED"
    assert (run.data.params["n_train_examples/squad"], run.data.params["n_select_examples/squad"]) == ("12", "6")
    metrics = run.data.metrics
    assert metrics["select/multitask/en/headline_mean"] == pytest.approx(
        (metrics["select/xnli/en/accuracy"] + metrics["select/squad/en/f1"]) / 2)
    assert "select/squad/en/exact_match" in metrics and "select/squad/en/loss" in metrics


def test_bad_task_lists_fail_the_run_with_one_clear_error(tracking_store, tiny_model_dir, small_bundle):
    cases = [  # one tracking store for all cases: creating one costs seconds; the runs each case leaves (FAILED)
        (["--task", "xnli,xnlii"], "unknown task 'xnlii'", 0),  # refused right after parsing, before any import
        (["--task", "xnli,copa,xnli"], "task 'xnli' is listed more than once in 'xnli,copa,xnli'", 1),
        (["--task", "xnli,copa", "--source-lang", "de"], "unknown language 'de' for task 'copa'", 1),
        (["--task", "copa,xcopa"], r"task 'xcopa' trains in stages \(siqa, xcopa\)", 1),
        (["--task", "xnli,copa", "--task-size-cap", "-1"], "task_size_cap must be >= 0", 1),
        (["--task", "xnli,copa", "--select-holdout", "5"], "select_holdout apply to one task", 1),
    ]
    failed_runs = 0
    for args, message, runs_left in cases:
        code, out = invoke(intermediate.main, ["--model", str(tiny_model_dir), "--protocol", "standard", *FAST, *args])
        assert code == 2 and out.count("xstilts: error:") == 1 and re.search(message, out), (args, out)
        failed_runs += runs_left
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
        assert [run.info.status for run in runs] == ["FAILED"] * failed_runs, args


def test_main_configs_and_the_mlproject_pass_the_task_list_and_the_cap(tmp_path):
    assert {"task", "task_size_cap"} <= parameter_names("intermediate")
    assert "--task-size-cap {task_size_cap}" in (PROJECT_ROOT / "MLproject").read_text(encoding="utf-8")
    config = tmp_path / "study.yaml"
    config.write_text("seeds: [1]\nmethods: [full]\nintermediate:\n  - task: anli,sst2,siqa\n    task_size_cap: 5000\n"
                      "targets: [{task: xnli}]\n", encoding="utf-8")
    declared = {entry: parameter_names(entry) for entry in STEP_ENTRIES}
    (step,) = [step for step in expand(read_config(config, declared)).steps if step.entry == "intermediate"]
    assert (step.params["task"], step.params["task_size_cap"]) == ("anli,sst2,siqa", 5000)

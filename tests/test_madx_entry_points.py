"""MAD-X through the entry points on the tiny model: lang_adapter -> target --method madx|task_adapter -> evaluate with
language adapters swapped per language, and the bad-input boundary of each."""

import shutil

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import XLMRobertaModel

from pipelines import evaluate, intermediate, lang_adapter, target
from tests.test_entry_points import all_runs, assert_clean_failure, invoke, run_id_of

MLM = ["--max-steps", "2", "--max-texts", "64", "--batch-size", "8", "--max-length", "32"]
PANX = ["--task", "panx", "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--max-train-examples", "48",
        "--select-holdout", "32"]


def train_lang_adapter(model_dir, lang: str, *options: str) -> str:
    code, out = invoke(lang_adapter.main, ["--lang", lang, "--model", str(model_dir), *MLM, *options])
    assert code == 0, out
    return run_id_of(out, "lang_adapter")


def artifact_paths(run_id: str, path: str = "") -> set[str]:
    return {info.path for info in MlflowClient().list_artifacts(run_id, path)}


@pytest.fixture
def english_adapter(tracking_store, tiny_model_dir):
    return train_lang_adapter(tiny_model_dir, "en")


def test_madx_chain_swaps_language_adapters_and_logs_each_choice(english_adapter, tiny_model_dir):
    swahili_adapter = train_lang_adapter(tiny_model_dir, "sw")
    lang_run = MlflowClient().get_run(swahili_adapter)
    assert artifact_paths(swahili_adapter) == {"adapters", "heads", "corpus"}
    assert artifact_paths(swahili_adapter, "adapters") == {"adapters/lang_sw"}
    assert lang_run.data.params["corpus_texts"] == "64" and "panx train" in lang_run.data.params["corpus_sources"]
    assert lang_run.data.params["lang_reduction_factor"] == "2.0" and lang_run.data.params["bottleneck"] == "16"
    assert "peak_rss_mb" in lang_run.data.metrics and "train/mlm/train_loss" in lang_run.data.metrics

    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), "--method", "madx",
                                     "--lang-adapter-run-id", english_adapter, "--task-reduction-factor", "8"])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    target_run = MlflowClient().get_run(target_id)
    assert artifact_paths(target_id) == {"adapters", "heads"}  # never a copy of the base model
    assert target_run.data.params["method"] == "madx"
    assert int(target_run.data.params["trainable_params"]) < int(target_run.data.params["total_params"]) / 10
    assert (target_run.data.params["task_reduction_factor"], target_run.data.params["lang_reduction_factor"]) == \
        ("8.0", "2.0")

    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,sw,yo", "--max-eval-examples", "20",
                                       "--lang-adapter-runs", swahili_adapter, "--lang-adapter-fallback", "none"])
    assert code == 0, out
    run = MlflowClient().get_run(run_id_of(out, "evaluate"))
    params = run.data.params
    assert (params["lang_adapter/panx/en"], params["lang_adapter/panx/sw"], params["lang_adapter/panx/yo"]) == \
        (english_adapter, swahili_adapter, "fallback none")
    assert (params["method"], params["max_eval_examples"]) == ("madx", "20")
    assert {run.data.metrics[f"eval_examples/panx/{lang}/n"] for lang in ("en", "sw", "yo")} == {20}
    assert all(0 <= run.data.metrics[f"eval/panx/{lang}/f1"] <= 100 for lang in ("en", "sw", "yo"))

    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "sw,yo", "--max-eval-examples", "5",
                                       "--lang-adapter-fallback", "source"])
    assert code == 0, out
    params = MlflowClient().get_run(run_id_of(out, "evaluate")).data.params
    assert params["lang_adapter/panx/yo"] == params["lang_adapter/panx/sw"] == f"fallback source {english_adapter}"

    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "sw,yo",
                                       "--lang-adapter-runs", swahili_adapter])
    assert_clean_failure(code, out, "no language adapter for yo: pass .* or choose lang_adapter_fallback source")


def test_task_adapter_method_needs_no_language_adapter(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), "--method", "task_adapter"])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "de", "--max-eval-examples", "10"])
    assert code == 0, out
    params = MlflowClient().get_run(run_id_of(out, "evaluate")).data.params
    assert (params["method"], params["lang_adapter/panx/de"]) == ("task_adapter", "none (method task_adapter)")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--lang-adapter-fallback", "source"])
    assert_clean_failure(code, out, "the run's method task_adapter uses no language adapters")


@pytest.mark.parametrize("lang, args, message", [
    ("my", [], "empty text corpus for language 'my': found panx dev 100 texts"),
    ("sw", ["--lang-reduction-factor", "5"], "reduction factor 5.0 does not divide the hidden size 32"),
    ("sw", ["--text-source", "wikipedia"], "text_source 'wikipedia'"),
])
def test_lang_adapter_bad_input(tracking_store, tiny_model_dir, lang, args, message):
    code, out = invoke(lang_adapter.main, ["--lang", lang, "--model", str(tiny_model_dir), *MLM, *args])
    assert_clean_failure(code, out, message)
    assert [run.info.status for run in all_runs()] == ["FAILED"]


def test_target_refuses_a_language_adapter_it_cannot_use(english_adapter, tiny_model_dir, tmp_path):
    other = tmp_path / "other-tiny"
    shutil.copytree(tiny_model_dir, other)
    model = XLMRobertaModel.from_pretrained(other)
    with torch.no_grad():
        model.encoder.layer[1].output.dense.weight.mul_(1.1)
    model.save_pretrained(other)
    for args, message in [
        (["--model", str(other)], "trained for another base encoder"),
        (["--model", str(tiny_model_dir), "--task-reduction-factor", "3"], "reduction factor 3.0 does not divide"),
    ]:
        code, out = invoke(target.main, [*PANX, "--method", "madx", "--lang-adapter-run-id", english_adapter, *args])
        assert_clean_failure(code, out, message)
    swahili_adapter = train_lang_adapter(tiny_model_dir, "sw")
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), "--method", "madx",
                                     "--lang-adapter-run-id", swahili_adapter])
    assert_clean_failure(code, out, "trained the 'sw' adapter; expected one in 'en'")


@pytest.mark.parametrize("args, message", [
    (["--method", "madx"], "method madx needs lang_adapter_run_id"),
    (["--method", "task_adapter", "--lang-adapter-run-id", "0123"], "method task_adapter uses no language adapter"),
    (["--method", "adapter_stilts", "--lang-adapter-run-id", "0123"], "method adapter_stilts starts from an "
                                                                      "intermediate run: pass init_run_id"),
])
def test_target_method_options_are_checked(tracking_store, tiny_model_dir, args, message):
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), *args])
    assert_clean_failure(code, out, message)


def test_evaluate_refuses_language_adapter_options_without_a_trained_run(tracking_store):
    code, out = invoke(evaluate.main, ["--retrieval-task", "tatoeba", "--lang-adapter-fallback", "none"])
    assert_clean_failure(code, out, "lang_adapter_fallback evaluate a trained `target` run")
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")


INTERMEDIATE = ["--task", "anli", "--epochs", "1", "--batch-size", "16", "--max-length", "32",
                "--max-train-examples", "32"]


def test_adapter_stilts_continues_the_intermediate_task_adapter(english_adapter, tiny_model_dir):
    model = ["--model", str(tiny_model_dir)]
    code, out = invoke(intermediate.main, [*INTERMEDIATE, *model, "--method", "madx",
                                           "--lang-adapter-run-id", english_adapter, "--task-reduction-factor", "8"])
    assert code == 0, out
    intermediate_id = run_id_of(out, "intermediate")
    assert artifact_paths(intermediate_id, "adapters") == {"adapters/task_anli"}
    assert "model" not in artifact_paths(intermediate_id)
    for args, message in [([], "reduction factor 8; continuing it needs the same task reduction factor, got 16"),
                          (["--method", "madx"], "method madx cannot start from intermediate run")]:
        code, out = invoke(target.main, [*PANX, *model, "--method", "adapter_stilts", "--init-run-id", intermediate_id,
                                         "--lang-adapter-run-id", english_adapter, *args])
        assert_clean_failure(code, out, message)
    code, out = invoke(target.main, [*PANX, *model, "--method", "adapter_stilts", "--init-run-id", intermediate_id,
                                     "--lang-adapter-run-id", english_adapter, "--task-reduction-factor", "8"])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    params = MlflowClient().get_run(target_id).data.params
    assert (params["method"], params["intermediate_task"], params["init_run_id"]) == \
        ("adapter_stilts", "anli", intermediate_id)
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "de", "--max-eval-examples", "5",
                                       "--lang-adapter-fallback", "none"])
    assert code == 0, out


def test_full_then_madx_needs_language_adapters_trained_for_the_intermediate_encoder(english_adapter, tiny_model_dir):
    model = ["--model", str(tiny_model_dir)]
    code, out = invoke(intermediate.main, [*INTERMEDIATE, *model])
    assert code == 0, out
    intermediate_id = run_id_of(out, "intermediate")
    code, out = invoke(lang_adapter.main, ["--lang", "en", *model, "--init-run-id", intermediate_id, *MLM])
    assert code == 0, out
    encoder_adapter = run_id_of(out, "lang_adapter")
    assert MlflowClient().get_run(encoder_adapter).data.params["intermediate_task"] == "anli"
    chain = [*PANX, *model, "--method", "full_then_madx", "--init-run-id", intermediate_id]
    code, out = invoke(target.main, [*chain, "--lang-adapter-run-id", english_adapter])
    assert_clean_failure(code, out, "trained for another base encoder")
    code, out = invoke(target.main, [*chain, "--lang-adapter-run-id", encoder_adapter])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,sw", "--max-eval-examples", "5",
                                       "--lang-adapter-fallback", "source"])
    assert code == 0, out
    run = MlflowClient().get_run(run_id_of(out, "evaluate"))
    assert run.data.params["method"] == "full_then_madx"
    assert run.data.params["lang_adapter/panx/sw"] == f"fallback source {encoder_adapter}"


def test_a_language_adapter_that_may_have_seen_the_task_s_evaluation_text_is_refused(tracking_store, tiny_model_dir):
    code, out = invoke(lang_adapter.main, ["--lang", "en", "--model", str(tiny_model_dir), *MLM,
                                           "--exclude-eval-of", "udpos"])
    assert code == 0, out
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), "--method", "madx",
                                     "--lang-adapter-run-id", run_id_of(out, "lang_adapter")])
    assert_clean_failure(code, out, "recorded no exclusion of panx's evaluation texts, so it may have trained on "
                                    "them .* left out those of: udpos")


def test_evaluation_refuses_a_language_adapter_whose_corpus_may_hold_what_it_scores(english_adapter, tiny_model_dir):
    code, out = invoke(target.main, [*PANX, "--model", str(tiny_model_dir), "--method", "madx",
                                     "--lang-adapter-run-id", english_adapter])
    assert code == 0, out
    target_id = run_id_of(out, "target")  # PAN-X under auto: target-dev, every language's dev sentences
    dev_split_adapter = train_lang_adapter(tiny_model_dir, "sw", "--protocol", "dev-split")
    assert MlflowClient().get_run(dev_split_adapter).data.params["corpus_excluded_items/panx"] == "dev-split: none"
    udpos_adapter = train_lang_adapter(tiny_model_dir, "sw", "--exclude-eval-of", "udpos")
    evaluation = ["--train-run-id", target_id, "--langs", "en,sw", "--max-eval-examples", "20", "--lang-adapter-runs"]
    for adapter, left_out in [(dev_split_adapter, "dev-split: none"),
                              (udpos_adapter, r"nothing recorded \(corpus_excluded_eval_of: udpos")]:
        code, out = invoke(evaluate.main, [*evaluation, adapter])
        assert_clean_failure(code, out, f"lang_adapter run {adapter} may have trained on text this evaluation scores: "
                                        f"panx \\[sw\\] scores target-dev: dev 0-19, and the adapter's corpus left out "
                                        f"of panx: {left_out}")
    covering_adapter = train_lang_adapter(tiny_model_dir, "sw", "--protocol", "dev-split,target-dev")
    assert MlflowClient().get_run(covering_adapter).data.params["corpus_excluded_items/panx"] == \
        "dev-split: none; target-dev: dev 0-999"  # the bundle's 1,000 Swahili PAN-X dev sentences
    code, out = invoke(evaluate.main, [*evaluation, covering_adapter])
    assert code == 0, out
    assert MlflowClient().get_run(run_id_of(out, "evaluate")).data.params["lang_adapter/panx/sw"] == covering_adapter

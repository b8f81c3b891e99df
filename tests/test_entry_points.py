"""The phase entry points end to end on the tiny model and real bundle data, and their bad-input boundary."""

import json
import re
import shutil

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from transformers import AutoTokenizer

import components.data
import components.training
from components.errors import XstiltsInputError
from components.settings import DATA_ROOT_ENV, data_root
from components.tasks import get_task
from components.training import check_selection_language
from pipelines import evaluate, intermediate, target

FAST = ["--epochs", "1", "--batch-size", "16", "--max-length", "64", "--max-train-examples", "48"]


def invoke(command, args):
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    return result.exit_code, result.output  # click 8.2+ mixes stderr into output


def run_id_of(output: str, phase: str) -> str:
    return re.search(rf"{phase} run (\w+)", output).group(1)


def all_runs():
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


@pytest.fixture
def tiny_chain(tracking_store, tiny_model_dir):
    model = ["--model", str(tiny_model_dir)]
    code, out = invoke(intermediate.main, ["--task", "anli", *model, *FAST])
    assert code == 0, out
    intermediate_id = run_id_of(out, "intermediate")
    code, out = invoke(target.main, ["--task", "xnli", "--init-run-id", intermediate_id, *model, *FAST])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "en,de"])
    assert code == 0, out
    return intermediate_id, target_id, run_id_of(out, "evaluate")


def test_chain_leaves_three_linked_finished_runs(tiny_chain):
    intermediate_id, target_id, evaluate_id = tiny_chain
    client = MlflowClient()
    runs = {run_id: client.get_run(run_id) for run_id in tiny_chain}
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    assert runs[target_id].data.params["init_run_id"] == intermediate_id
    assert runs[target_id].data.params["intermediate_task"] == "anli"
    assert runs[evaluate_id].data.params["train_run_id"] == target_id
    assert runs[evaluate_id].data.params["data_protocol"] == "dev-split"
    assert runs[target_id].data.params["protocol_select_items"] == "1800-1997"


def test_evaluate_scores_the_files_it_writes(tiny_chain):
    evaluate_id = tiny_chain[2]
    run = MlflowClient().get_run(evaluate_id)
    gold = [line.split("\t")[2] for line in
            (data_root() / "xtreme/download/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()[1998:]]
    # Dev-split scores the last 492 of the 2,490 dev items: the file is named by its split and share of items.
    predicted = mlflow.artifacts.load_text(f"runs:/{evaluate_id}/predictions/xnli/dev-de.492-of-2490.tsv").splitlines()
    assert len(predicted) == len(gold) == 492
    by_hand = 100 * sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert run.data.metrics["eval/xnli/de/accuracy"] == pytest.approx(by_hand)
    assert "eval/xnli/en/accuracy" in run.data.metrics and "eval/xnli/fr/accuracy" not in run.data.metrics


def test_evaluate_in_bf16_logs_its_precision_and_scores_its_own_predictions(tiny_chain):
    target_id, fp32_id = tiny_chain[1:]
    code, out = invoke(evaluate.main, ["--train-run-id", target_id, "--langs", "de", "--eval-precision", "bf16"])
    assert code == 0, out
    client = MlflowClient()
    bf16 = client.get_run(run_id_of(out, "evaluate"))
    assert (bf16.data.params["eval_precision"], client.get_run(fp32_id).data.params["eval_precision"]) == (
        "bf16", "fp32")
    gold = [line.split("\t")[2] for line in
            (data_root() / "xtreme/download/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()[1998:]]
    predicted = mlflow.artifacts.load_text(
        f"runs:/{bf16.info.run_id}/predictions/xnli/dev-de.492-of-2490.tsv").splitlines()
    assert bf16.data.metrics["eval/xnli/de/accuracy"] == pytest.approx(
        100 * sum(p == g for p, g in zip(predicted, gold)) / len(gold))


@pytest.mark.parametrize("args, message", [
    (["--retrieval-task", "tatoeba", "--eval-precision", "bf16"], "eval_precision evaluate a trained `target` run"),
    (["--train-run-id", "0123456789abcdef", "--eval-precision", "fp16"], "precision fp16 needs a CUDA GPU"),
])
def test_evaluate_precision_bad_input(tracking_store, args, message):
    code, out = invoke(evaluate.main, args)
    assert_clean_failure(code, out, message)
    assert all_runs() == []


def read_tag_file(text: str) -> list[list[str]]:
    """XTREME's `read_tag`: one tag per line, sentences separated by blank lines."""
    return [block.split("\n") for block in text.strip("\n").split("\n\n")]


def upos_chunk_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """XTREME's UD-POS F1 (seqeval 0.0.12 on UPOS tags): chunks are the runs of one tag within a sentence, except
    that SCONJ and SYM (first letter S) are one chunk per word."""
    def chunks(sentences):
        found = set()
        for index, tags in enumerate(sentences):
            start = 0
            for position in range(1, len(tags) + 1):
                if position == len(tags) or tags[position] != tags[start] or tags[start][0] == "S":
                    found.add((index, start, position - 1, tags[start]))
                    start = position
        return found
    gold_chunks, predicted_chunks = chunks(gold), chunks(predicted)
    return 200 * len(gold_chunks & predicted_chunks) / (len(gold_chunks) + len(predicted_chunks))


def test_tagging_chain_scores_the_xtreme_tag_files_it_writes(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, ["--task", "udpos", "--model", str(tiny_model_dir), *FAST])
    assert code == 0, out
    code, out = invoke(evaluate.main, ["--train-run-id", run_id_of(out, "target"), "--langs", "wo,ja"])
    assert code == 0, out
    evaluate_id = run_id_of(out, "evaluate")
    run = MlflowClient().get_run(evaluate_id)
    # UD-POS test files exist for wo, not for ja (its test is PUD, left out of the bundle): ja is scored on dev.
    assert (run.data.params["eval_split/udpos/wo"], run.data.params["eval_split/udpos/ja"]) == ("test", "dev")
    assert run.data.metrics["eval_examples/udpos/ja/n"] == 511  # UD-POS dev-ja sentences
    assert run.data.params["tagging_long_sentences"] == "windows(overlap=32,word_from=most_context)"  # max_length 64
    predicted = read_tag_file(mlflow.artifacts.load_text(f"runs:/{evaluate_id}/predictions/udpos/test-wo.tsv"))
    gold = [[line.split("\t")[1] for line in block.split("\n")] for block in
            (data_root() / "xtreme/download/udpos/test-wo.tsv").read_text(encoding="utf-8").strip().split("\n\n")]
    assert len(predicted) == len(gold) == 470
    assert [len(sentence) for sentence in predicted] == [len(sentence) for sentence in gold]
    metrics = MlflowClient().get_run(evaluate_id).data.metrics
    assert metrics["eval/udpos/wo/f1"] == pytest.approx(upos_chunk_f1(gold, predicted))
    flat = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    assert metrics["eval/udpos/wo/token_accuracy"] == pytest.approx(100 * sum(g == p for g, p in flat) / len(flat))


def test_pawsx_trains_on_its_dev_split_and_scores_every_language(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, ["--task", "pawsx", "--model", str(tiny_model_dir), *FAST])
    assert code == 0, out
    target_params = MlflowClient().get_run(run_id_of(out, "target")).data.params
    # FAST caps training at 48 of the dev-split's 1,500 training items.
    assert (target_params["data_protocol"], target_params["n_train_examples"], target_params["n_train_available"]) == \
        ("dev-split", "48", "1500")
    assert target_params["protocol_split_sizes"] == "train 1500, select 200, eval 300"
    code, out = invoke(evaluate.main, ["--train-run-id", run_id_of(out, "target")])
    assert code == 0, out
    run = MlflowClient().get_run(run_id_of(out, "evaluate"))
    langs = "de en es fr ja ko zh".split()
    assert {lang: run.data.metrics[f"eval_examples/pawsx/{lang}/n"] for lang in langs} == dict.fromkeys(langs, 300)
    assert all(0 <= run.data.metrics[f"eval/pawsx/{lang}/accuracy"] <= 100 for lang in langs)
    assert {run.data.params[f"eval_split/pawsx/{lang}"] for lang in langs} == {"dev"}


def test_target_selection_reads_english_dev_only(tracking_store, tiny_model_dir, loaded_splits):
    loads = loaded_splits
    code, out = invoke(target.main, ["--task", "xnli", "--model", str(tiny_model_dir), *FAST])
    assert code == 0, out
    assert loads and {lang for _, _, lang in loads} == {"en"}


def test_selection_language_rule():
    check_selection_language([{"lang": "en"}], "en")
    with pytest.raises(XstiltsInputError, match="selection data in de"):
        check_selection_language([{"lang": "en"}, {"lang": "de"}], "en")


def assert_clean_failure(code, out, message):
    assert code == 2, out
    assert re.search(message, out), out
    assert out.count("xstilts: error:") == 1
    assert "RUNNING" not in {run.info.status for run in all_runs()}


@pytest.mark.parametrize("args, message", [
    (["--task", "xnlii"], "unknown task 'xnlii'"),
    (["--model", "xlm-roberta-huge"], "unknown model 'xlm-roberta-huge'"),
    (["--task", "pawsx", "--protocol", "standard"], "pawsx/train-en.tsv"),
])
def test_target_bad_input(tracking_store, tiny_model_dir, args, message):
    code, out = invoke(target.main, ["--model", str(tiny_model_dir), *FAST, *args])
    assert_clean_failure(code, out, message)


def test_unknown_source_language(tracking_store, tiny_model_dir):
    code, out = invoke(intermediate.main, ["--task", "anli", "--source-lang", "de", "--model", str(tiny_model_dir)])
    assert_clean_failure(code, out, "unknown language 'de' for task 'anli'")


@pytest.mark.parametrize("content, message", [
    ("p\th\tneutral\np\th\n", r"dev-en.tsv:2: expected 3 tab-separated columns"),
    ("p\th\tneutral\np\th\tmaybe\n", r"dev-en.tsv:2: label 'maybe' is not in the label set"),
    ("p\th\np\th\n", r"labels withheld in \S*dev-en.tsv \(every row has 2 columns"),
    ("p\th\tneutral\n \th\tneutral\n", r"dev-en.tsv:2: empty text_a: expected a sentence"),
])
def test_malformed_data_fails_the_run(tracking_store, tiny_model_dir, tmp_path, monkeypatch, content, message):
    (tmp_path / "data/xtreme/download/xnli").mkdir(parents=True)
    (tmp_path / "data/xtreme/download/xnli/dev-en.tsv").write_text(content, encoding="utf-8")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "data"))
    code, out = invoke(target.main, ["--model", str(tiny_model_dir), *FAST])
    assert_clean_failure(code, out, message)
    assert [run.info.status for run in all_runs()] == ["FAILED"]


def test_missing_data_file(tracking_store, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "nowhere"))
    code, out = invoke(target.main, ["--model", str(tiny_model_dir), *FAST])
    assert_clean_failure(code, out, r"missing data file\(s\): .*nowhere/xtreme/download/xnli/dev-en.tsv")


def test_corrupt_model_folder(tracking_store, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, out = invoke(target.main, ["--model", str(broken), *FAST])
    assert_clean_failure(code, out, f"{broken}: not a loadable model folder, e.g. truncated or corrupt weights")


def test_evaluate_refuses_a_run_that_is_not_a_finished_target(tracking_store):
    code, out = invoke(evaluate.main, ["--train-run-id", "0123456789abcdef"])
    assert_clean_failure(code, out, "run '0123456789abcdef' does not exist")


def test_multiple_choice_chain_scores_the_xcopa_files_it_writes(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, ["--task", "copa", "--protocol", "target-dev", "--model", str(tiny_model_dir),
                                     *FAST])
    assert code == 0, out
    target_id = run_id_of(out, "target")
    assert MlflowClient().get_run(target_id).data.params["n_select_examples"] == "100"  # COPA val-en
    code, out = invoke(evaluate.main, ["--train-run-id", target_id])
    assert code == 0, out
    evaluate_id = run_id_of(out, "evaluate")
    predicted = [json.loads(line)["label"] for line in
                 mlflow.artifacts.load_text(f"runs:/{evaluate_id}/predictions/copa/dev-en.jsonl").splitlines()]
    gold = [json.loads(line)["label"] for line in
            (data_root() / "xtreme/download/xcopa/val-en.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(predicted) == len(gold) == 100 and set(predicted) <= {0, 1}
    by_hand = 100 * sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert MlflowClient().get_run(evaluate_id).data.metrics["eval/copa/en/accuracy"] == pytest.approx(by_hand)


def test_xcopa_target_runs_socialiqa_then_copa(tracking_store, tiny_model_dir):
    code, out = invoke(target.main, ["--task", "xcopa", "--model", str(tiny_model_dir), *FAST])
    assert code == 0, out
    run = MlflowClient().get_run(run_id_of(out, "target"))
    assert (run.data.params["stage1_task"], run.data.params["stage2_task"]) == ("siqa", "xcopa")
    assert run.data.params["stage2_train_source"] == "copa"
    assert {"select/siqa/en/accuracy", "select/xcopa/en/accuracy"} <= set(run.data.metrics)


def test_max_select_examples_scores_the_first_english_selection_items(tracking_store, tiny_model_dir, monkeypatch):
    scored = []
    real_evaluate = components.training.OrderedEvaluationTrainer.evaluate

    def spy(self, *args, **kwargs):
        scored.append([feature["input_ids"] for feature in self.eval_dataset])
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(components.training.OrderedEvaluationTrainer, "evaluate", spy)
    code, out = invoke(target.main, ["--task", "panx", "--model", str(tiny_model_dir), *FAST,
                                     "--max-select-examples", "7"])
    assert code == 0, out
    english_dev = components.data.load_split(get_task("panx"), "dev", "en")[:7]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # PAN-X items are one feature each: the first token after <s> is the first word's first piece.
    first_pieces = [tokenizer(item["tokens"][0], add_special_tokens=False)["input_ids"][0] for item in english_dev]
    assert scored and all([ids[1] for ids in features] == first_pieces for features in scored)
    assert MlflowClient().get_run(run_id_of(out, "target")).data.params["max_select_examples"] == "7"

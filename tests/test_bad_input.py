"""Bad input, caught before anything trains: one clear error naming the file, line, key or value, a non-zero exit,
and no run left RUNNING; and a phase stopped by a signal ends its run KILLED."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from transformers import AutoTokenizer

from components import tracking
from components.data import load_split
from components.errors import Interrupted, XstiltsInputError
from components.retrieval import read_aligned_pairs
from components.settings import DATA_ROOT_ENV, PROJECT_ROOT, data_root
from components.tasks import get_task
from components.task_types import handler_for
from components.model_registry import check_max_length, shortest_max_length
from pipelines import evaluate, intermediate, lang_adapter, target, tune

FAST = ["--epochs", "1", "--batch-size", "16", "--max-train-examples", "48"]


def invoke(command, args):
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    return result.exit_code, result.output  # click 8.2+ mixes stderr into output


def statuses() -> list[str]:
    return [run.info.status for run in mlflow.search_runs(search_all_experiments=True, output_format="list")]


# --- a data file that is not UTF-8 ----------------------------------------------------------------------------------

def test_a_data_file_with_a_non_utf8_byte_is_named_with_its_line_offset_and_byte(tmp_path):
    """The bad byte sits past the decoder's first 8 KiB chunk, whose own offset would count from the chunk."""
    good = "".join(f"A premise number {n}.\tA hypothesis.\tentailment\n" for n in range(400)).encode()
    path = tmp_path / "xtreme/download/xnli/dev-de.tsv"
    path.parent.mkdir(parents=True)
    path.write_bytes(good + b"caf\xe9 au lait\tA hypothesis.\tneutral\n")
    with pytest.raises(XstiltsInputError) as raised:
        load_split(get_task("xnli"), "dev", "de", root=tmp_path)
    assert len(good) > 8192
    assert str(raised.value) == (f"{path}:401: byte 0xe9 at byte offset {len(good) + 3} is not UTF-8 (invalid "
                                 "continuation byte); expected a UTF-8 text file")


def test_a_retrieval_file_with_a_non_utf8_byte_is_named_too(tmp_path):
    source, english = tmp_path / "de.txt", tmp_path / "en.txt"
    source.write_bytes(b"Guten Tag\n\xff\n")
    english.write_text("Good day\nHello\n", encoding="utf-8")
    with pytest.raises(XstiltsInputError, match=rf"^{source}:2: byte 0xff at byte offset 10 is not UTF-8"):
        read_aligned_pairs(source, english)


def test_a_phase_on_a_non_utf8_file_exits_with_one_error_and_trains_nothing(tracking_store, tiny_model_dir, tmp_path,
                                                                             monkeypatch):
    root = tmp_path / "data"
    english = root / "xtreme/download/xnli/dev-en.tsv"
    english.parent.mkdir(parents=True)
    first_line = b"A premise.\tA hypothesis.\tentailment\n"
    english.write_bytes(first_line + b"na\xefve\tA hypothesis.\tneutral\n")
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    code, out = invoke(target.main, ["--task", "xnli", "--protocol", "dev-split", "--model", str(tiny_model_dir),
                                     *FAST])
    assert code == 2 and out.count("xstilts: error:") == 1 and "Traceback" not in out, out
    assert f"{english}:2: byte 0xef at byte offset {len(first_line) + 2} is not UTF-8" in out
    assert statuses() == ["FAILED"]  # the data is read inside the run, which ends FAILED with nothing trained


# --- max_length ------------------------------------------------------------------------------------------------------

def test_the_shortest_max_length_leaves_each_text_of_a_pair_its_own_tokens(tiny_model_dir):
    """At the floor, truncation keeps at least 8 tokens of both a long premise and a long hypothesis."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = get_task("xnli")
    floor = shortest_max_length(spec)
    long_text = " ".join(["the premise goes on and on"] * 20)
    features = handler_for(spec).encode([{"text_a": long_text, "text_b": long_text, "label": "neutral"}],
                                        tokenizer, floor, spec.labels)
    ids = features[0]["input_ids"]
    separators = [index for index, token in enumerate(ids) if token == tokenizer.sep_token_id]
    premise_tokens, hypothesis_tokens = separators[0] - 1, separators[-1] - separators[1] - 1
    assert len(ids) == floor == 20 and premise_tokens >= 8 and hypothesis_tokens >= 8


def test_at_the_shortest_max_length_a_qa_window_holds_a_long_question_and_context(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = get_task("xquad")
    context = " ".join(["the river runs through the old town"] * 20)
    example = {"id": "q1", "context": context, "question": " ".join(["which river runs through the town"] * 5),
               "answers": {"text": ["river"], "answer_start": [4]}, "lang": "en"}
    features = handler_for(spec).encode([example], tokenizer, shortest_max_length(spec), spec.labels)
    assert len(features) > 1 and all(len(feature["input_ids"]) <= 20 for feature in features)


@pytest.mark.parametrize("max_length, expected", [
    (5, r"max_length 5: expected 20 to 138 tokens: xnli \(pair_classification\) needs at least 20"),
    (2, "max_length 2: expected 20 to 138 tokens"),
    # The tiny model has 140 positions; XLM-R numbers positions from padding id 1 + 1, so 138 are usable.
    (1024, "max_length 1024: expected 20 to 138 tokens: .* and model .* takes at most 138"),
])
def test_max_length_outside_what_the_task_needs_and_the_model_takes_is_refused_before_any_run(
        tracking_store, tiny_model_dir, max_length, expected):
    code, out = invoke(target.main, ["--task", "xnli", "--model", str(tiny_model_dir), *FAST,
                                     "--max-length", str(max_length)])
    assert code == 2 and out.count("xstilts: error:") == 1, out
    assert len(re.findall(expected, out)) == 1, out
    assert statuses() == []


@pytest.mark.parametrize("command, args, expected", [
    (lang_adapter.main, ["--lang", "sw"], "max_length 5: expected 10 to 138 tokens: plain text needs at least 10"),
    (tune.main, ["--task", "panx"], r"max_length 5: expected 10 to 138 tokens: panx \(token_classification\)"),
])
def test_language_adapters_and_tuning_check_max_length_before_any_run(tracking_store, tiny_model_dir, command, args,
                                                                     expected):
    code, out = invoke(command, [*args, "--model", str(tiny_model_dir), "--max-length", "5"])
    assert code == 2 and out.count("xstilts: error:") == 1 and re.search(expected, out), out
    assert statuses() == []


def test_max_length_bounds_per_task_type_and_model(tiny_model_dir):
    check_max_length(10, str(tiny_model_dir), [get_task("panx")])  # one text: 8 tokens and <s> </s>
    check_max_length(138, str(tiny_model_dir), [get_task("xnli")])
    for max_length, specs in ((9, [get_task("panx")]), (19, [get_task("xcopa")]), (19, [get_task("xquad")]),
                              (19, [get_task("panx"), get_task("xnli")]), (9, []), (139, [get_task("panx")])):
        with pytest.raises(XstiltsInputError, match=rf"^max_length {max_length}: expected"):
            check_max_length(max_length, str(tiny_model_dir), specs)
    check_max_length(512, "multilingual-e5-small", [get_task("xnli")])
    with pytest.raises(XstiltsInputError, match="at most 512"):
        check_max_length(513, "multilingual-e5-small", [get_task("xnli")])


# --- a task scored without training as a training task ----------------------------------------------------------

EVALUATED_WITHOUT_TRAINING = ("task 'tatoeba' (retrieval) is evaluated without task training, so the {phase} phase "
                              "cannot train on it: the evaluate entry point scores an encoder on it "
                              "(retrieval_task=tatoeba, with encoder_run_id=<an intermediate or target run> or "
                              "encoder_model=<a model>)")


@pytest.mark.parametrize("command, phase", [(target.main, "target"), (intermediate.main, "intermediate")])
def test_a_retrieval_task_as_a_training_task_says_which_entry_point_scores_it(tracking_store, tiny_model_dir,
                                                                               command, phase):
    code, out = invoke(command, ["--task", "tatoeba", "--model", str(tiny_model_dir), *FAST])
    assert code == 2 and out.count("xstilts: error:") == 1, out
    assert EVALUATED_WITHOUT_TRAINING.format(phase=phase) in " ".join(out.split())
    assert statuses() == []


def test_a_retrieval_task_in_a_multitask_mixture_fails_its_run_before_training(tracking_store, tiny_model_dir):
    code, out = invoke(intermediate.main, ["--task", "xnli,tatoeba", "--model", str(tiny_model_dir), *FAST])
    assert code == 2 and EVALUATED_WITHOUT_TRAINING.format(phase="intermediate") in " ".join(out.split()), out
    assert statuses() == ["FAILED"]


# --- evaluate languages without data ---------------------------------------------------------------------------------

def test_evaluate_names_every_language_without_data_before_scoring_any(tracking_store, tmp_path, monkeypatch):
    """XNLI under target-dev scores each language's dev file; fr and es have none here (and no Hub offline)."""
    root = tmp_path / "data"
    for lang in ("en", "de"):
        source = data_root() / f"xtreme/download/xnli/dev-{lang}.tsv"
        (root / source.relative_to(data_root())).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / source.relative_to(data_root()))
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    client = MlflowClient()
    trained = client.create_run("0", tags={"xlt.phase": "target"}).info.run_id  # a stand-in: never downloaded
    for key, value in {"task": "xnli", "data_protocol": "target-dev", "max_length": "64", "method": "full",
                       "source_lang": "en"}.items():
        client.log_param(trained, key, value)
    client.set_terminated(trained, "FINISHED")

    code, out = invoke(evaluate.main, ["--train-run-id", trained, "--langs", "en,fr,de,es"])
    assert code == 2 and out.count("xstilts: error:") == 1, out
    assert "cannot evaluate xnli in 2 of the 4 languages asked for (fr, es), so none was scored" in out
    assert f"{root}/xtreme/download/xnli/dev-fr.tsv" in out and f"{root}/xtreme/download/xnli/dev-es.tsv" in out
    assert statuses() == ["FINISHED"]  # the stand-in alone: no evaluate run was started


# --- stopped by a signal -------------------------------------------------------------------------------------------

def test_a_signal_inside_a_phase_run_ends_it_and_its_parent_killed_and_stops_its_child_processes(tracking_store):
    """What `main` and `tune` rely on: their runs (and a tuning trial nested in one) end KILLED, and the processes
    they started (step processes, tuning workers) get the signal too."""
    previous = signal.getsignal(signal.SIGTERM)
    child = subprocess.Popen(["sleep", "60"])
    with pytest.raises(Interrupted) as raised:
        with tracking.phase_run("tune", {}) as study_run_id:
            with tracking.phase_run("target", {}, parent_run_id=study_run_id) as trial_run_id:
                os.kill(os.getpid(), signal.SIGTERM)
    assert raised.value.signum == signal.SIGTERM
    assert child.wait(timeout=10) == -signal.SIGTERM
    assert [tracking.run_status(run_id) for run_id in (study_run_id, trial_run_id)] == ["KILLED", "KILLED"]
    assert signal.getsignal(signal.SIGTERM) is previous and mlflow.active_run() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_training_phase_stopped_by_a_signal_ends_its_run_killed(tracking_store, tiny_model_dir, tmp_path, signum):
    uri = tracking.connect()  # the store exists before the phase and this test poll it
    environment = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "pipelines.target", "--task", "xnli", "--model",
                                str(tiny_model_dir), "--epochs", "1000", "--batch-size", "16", "--max-length", "32",
                                "--max-train-examples", "48", "--max-select-examples", "16"],
                               cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        client = MlflowClient(uri)
        run = wait_for_training(client, process)
        process.send_signal(signum)
        out, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, out
    assert f"xstilts: stopped by {signal.Signals(signum).name}" in out and "Traceback" not in out, out
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def wait_for_training(client: MlflowClient, process: subprocess.Popen, timeout_s: float = 240):
    """The process's run once its training has begun (the Trainer's first callback logs `world_size`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
        if runs and "world_size" in runs[0].data.params:
            assert runs[0].info.status == "RUNNING"
            return runs[0]
        time.sleep(1)
    raise AssertionError("the run logged no training step in time")


# --- two processes creating one new store ------------------------------------------------------------------------

def test_two_processes_creating_a_new_sqlite_store_at_once_both_succeed(tmp_path):
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                   "PYTHONPATH": str(PROJECT_ROOT)}
    code = ("from components import tracking; tracking.connect(); import mlflow; "
            "print([e.name for e in mlflow.search_experiments()])")
    processes = [subprocess.Popen([sys.executable, "-c", code], env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(process.communicate(timeout=300), process.returncode) for process in processes]
    for (out, err), returncode in results:
        assert returncode == 0 and "Traceback" not in err, err
        assert out.strip() == "['Default']"

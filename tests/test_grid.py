"""The study grid: config checks, expansion with shared steps, and get-or-run over a real tracking store."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import datasets
import mlflow
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from components import executors, tracking
from components.errors import XstiltsInputError
from components.corpus import build_corpus, check_exclusion_covers, evaluation_protocols, studied_tasks
from components.grid import cache_key, expand, read_config
from components.methods import METHODS, unsupported_reason
from components.options import parameter_names
from components.tasks import get_task
from components.settings import PROJECT_ROOT, threads_per_process
from pipelines import main
from tests.hub_fixtures import hub_cache, hub_datasets  # noqa: F401  (fixtures: Hub-only tasks offline)

DECLARED = {entry: parameter_names(entry) for entry in main.STEP_ENTRIES}

STUDY = """
model: multilingual-e5-small
seeds: [1, 2]
methods: [full, madx, adapter_stilts]
intermediate:
  - none
  - {task: anli, epochs: 1}
targets:
  - {task: xnli, epochs: 1, evaluate: {langs: "en,de,sw"}}
  - {task: panx, evaluate: {langs: "en,sw"}}
  - {task: tatoeba, evaluate: {langs: "de"}}
lang_adapter: {max_steps: 5}
lang_adapter_langs: [en, sw]
lang_adapter_fallback: source
"""


def write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_expansion_shares_intermediate_runs_and_language_adapters(tmp_path):
    grid = expand(read_config(write(tmp_path, STUDY), DECLARED))
    by_entry = {}
    for step in grid.steps:
        by_entry.setdefault(step.entry, []).append(step)
    # Per seed: none x {full, madx} and anli x {full, adapter_stilts} for 2 trained targets = 8 targets; 16 for 2 seeds.
    assert len(by_entry["target"]) == 16
    # Per seed: one full and one madx anli run, each shared by both targets.
    assert len(by_entry["intermediate"]) == 4
    # en and sw adapters on the base model, shared by every seed, target and method; no seed in their params.
    assert sorted(step.params["lang"] for step in by_entry["lang_adapter"]) == ["en", "sw"]
    # 16 trained-task evaluations + tatoeba from the base model and from the anli full encoder of each seed.
    assert len(by_entry["evaluate"]) == 16 + 1 + 2
    assert sorted(grid.skipped) == sorted([
        "none -> xnli x adapter_stilts: adapter_stilts starts from an intermediate run",
        "none -> panx x adapter_stilts: adapter_stilts starts from an intermediate run",
        "anli[en] -> xnli x madx: madx starts from the base model (use adapter_stilts or full_then_madx after an "
        "intermediate)",
        "anli[en] -> panx x madx: madx starts from the base model (use adapter_stilts or full_then_madx after an "
        "intermediate)",
        "none -> tatoeba x madx: retrieval tasks are scored from the encoder, without a method",
        "none -> tatoeba x adapter_stilts: retrieval tasks are scored from the encoder, without a method",
        "anli[en] -> tatoeba x madx: retrieval tasks are scored from the encoder, without a method",
        "anli[en] -> tatoeba x adapter_stilts: retrieval tasks are scored from the encoder, without a method",
    ])
    keys = {step.key: step for step in grid.steps}
    madx_eval = next(step for step in by_entry["evaluate"] if "madx" in step.label and "xnli" in step.label)
    # de has no adapter of its own: it falls back to the source adapter, by the config's explicit choice.
    assert [keys[key].params["lang"] for key in madx_eval.params["lang_adapter_runs"].keys] == ["sw"]
    assert madx_eval.params["lang_adapter_fallback"] == "source"
    stilts = next(step for step in by_entry["intermediate"] if step.params["method"] == "madx")
    assert keys[stilts.params["lang_adapter_run_id"].keys[0]].params["lang"] == "en"
    for level_index, level in enumerate(grid.levels()):
        earlier = {step.key for lower in grid.levels()[:level_index] for step in lower}
        assert all(set(step.upstream()) <= earlier for step in level)


def test_cache_key_ignores_param_order_and_number_spelling_but_not_code():
    assert cache_key("target", {"lr": 1e-4, "task": "xnli"}, "v1") == cache_key("target", {"task": "xnli", "lr": 0.0001}, "v1")
    assert cache_key("target", {"task": "xnli"}, "v1") != cache_key("target", {"task": "xnli"}, "v2")


ONE = "seeds: [1]\nmethods: [full]\n"  # the settings every case below shares


@pytest.mark.parametrize("text, where, message", [
    (ONE + "targets: [{task: xnli, lrr: 1}]\n", "targets[0]", "unknown parameter(s) lrr for target"),
    ("seeds: [1]\nmethods: [fine]\ntargets: [{task: xnli}]\n", "methods[0]: 'fine'", "unknown method"),
    (ONE + "targets: [{task: xnli, methods: [full, fine]}]\n", "targets[0].methods[1]: 'fine'", "unknown method"),
    (ONE + "targets: [{task: xnli, methods: []}]\n", "targets[0].methods: []", "must be a non-empty list"),
    (ONE + "targets: [{task: xnlii}]\n", "targets[0].task: 'xnlii'", "unknown task 'xnlii'"),
    (ONE + "targets: [{task: 'xnli,pawsx'}]\n", "targets[0].task: 'xnli,pawsx'", "a target is one task"),
    (ONE + "targets: [{epochs: 1}]\n", "targets[0].task", "missing: every entry names its task"),
    (ONE + "intermediate: [none, {epochs: 1}]\ntargets: [{task: xnli}]\n", "intermediate[1].task", "missing"),
    ("seeds: []\nmethods: [full]\ntargets: [{task: xnli}]\n", "`seeds:`", "must be a non-empty list"),
    ("seeds: [1.5]\nmethods: [full]\ntargets: [{task: xnli}]\n", "seeds[0]: 1.5", "seeds must be integers"),
    (ONE + "targets: [{task: xnli}]\nbudget: 3\n", "unknown key(s) budget", "expected some of"),
    (ONE + "targets: [xnli]\n", "each entry of `targets:` must be a mapping", "'xnli'"),
    (ONE + "targets: [{task: xnli}\n", "not valid YAML", "flow sequence"),
    ("model: xlmr-tiny\n" + ONE + "targets: [{task: xnli}]\n", "model: 'xlmr-tiny'", "unknown model 'xlmr-tiny'"),
    (ONE + "targets: [{task: xnli, evaluate: {langs: 'en,xx'}}]\n", "targets[0].evaluate.langs: 'en,xx'",
     "unknown language 'xx' for task 'xnli'"),
    # UD-POS Thai has only a PUD test treebank, which the bundle leaves out: no labeled test or dev file.
    (ONE + "targets: [{task: udpos, evaluate: {langs: 'en,th'}}]\n", "targets[0].evaluate.langs: 'en,th'",
     "cannot evaluate udpos [th]: no labeled test or dev data"),
    (ONE + "intermediate: [{task: anli, source_lang: de}]\ntargets: [{task: xnli}]\n",
     "intermediate[0].source_lang: 'de'", "unknown language 'de' for task 'anli'"),
    (ONE + "intermediate: [{task: tatoeba}]\ntargets: [{task: xnli}]\n", "intermediate[0].task: 'tatoeba'",
     "cannot be an intermediate task in en: tatoeba is evaluated without task training: it has no training data"),
    (ONE + "intermediate: [{task: udpos, source_lang: th}]\ntargets: [{task: xnli}]\n",
     "intermediate[0].task: 'udpos'", "cannot be an intermediate task in th: missing data file(s): "),
    (ONE + "intermediate: [{task: ccg}]\ntargets: [{task: xnli}]\n", "intermediate[0].task: 'ccg'",
     "task 'ccg' cannot be obtained: CCGbank is LDC-licensed"),
    ("seeds: [1]\nmethods: [madx]\ntargets: [{task: xnli}]\nlang_adapter_langs: [en, qu]\n",
     "lang_adapter_langs[1]: 'qu'", "unknown language: no target task has it"),
    (ONE + "targets: [{task: xquad, train_source_override: tydiqa}]\n", "targets[0].task: 'xquad'",
     "cannot train it: xquad has no English dev split to select on here: the XTREME layout has no dev split for "
     "xquad; no Hugging Face dataset is registered for xquad dev (a stand-in: select_holdout"),
    # Hub-only data offline, with nothing of it in the datasets cache (an empty one: `empty_hub_cache`).
    (ONE + "targets: [{task: xquad, select_holdout: 300}]\n", "targets[0].task: 'xquad'",
     "cannot train it: squad has no English train split here: missing data file(s): "),
    (ONE + "targets: [{task: xquad, select_holdout: 300}]\n", "targets[0].task: 'xquad'",
     "; the Hugging Face Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and its datasets cache "),
    (ONE + "targets: [{task: pawsx, protocol: standard}]\n", "targets[0].task: 'pawsx'",
     "has no google-research-datasets/paws-x en train split (a stand-in: train_source_override"),
    (ONE + "intermediate: [{task: tydiqa, source_lang: ar}]\ntargets: [{task: xnli}]\n", "intermediate[0].task: "
     "'tydiqa'", "cannot be an intermediate task in ar: missing data file(s): "),
    (ONE + "intermediate: [{task: mnli}]\ntargets: [{task: xnli}]\n", "intermediate[0].task: 'mnli'",
     "has no nyu-mll/multi_nli train split (a stand-in: train_source_override"),
    (ONE + "targets: [{task: xquad, train_source_override: xnli, select_holdout: 300}]\n", "targets[0].task: 'xquad'",
     "train_source_override xnli is a pair_classification task"),
    # The source-language study's first run stopped at its 29th step on this: the arm's adapter intermediate run
    # (adapter_stilts upstream) refused the English adapter, whose corpus had left out PAN-X's evaluation texts only.
    ("seeds: [1]\nmethods: [adapter_stilts]\nintermediate: [{task: udpos}]\ntargets: [{task: panx}]\n"
     "lang_adapter: {exclude_eval_of: panx}\n", "lang_adapter.exclude_eval_of: 'panx'",
     "leaves out no evaluation text of udpos, which intermediate[0] trains or scores on language adapters"),
    ("seeds: [1]\nmethods: [madx]\ntargets: [{task: panx}]\nlang_adapter: {exclude_eval_of: none}\n",
     "lang_adapter.exclude_eval_of: 'none'", "leaves out no evaluation text of panx, which targets[0] trains"),
    ("seeds: [1]\nmethods: [madx]\ntargets: [{task: panx}]\nlang_adapter: {exclude_eval_of: 'panx,udpo'}\n",
     "lang_adapter.exclude_eval_of: 'panx,udpo'", "unknown task(s) udpo"),
    ("seeds: [1]\nmethods: [madx]\ntargets: [{task: panx}]\nlang_adapter: {protocol: standard}\n",
     "lang_adapter.protocol: 'standard'", "set by the grid: the protocols of the targets"),
    (ONE + "targets: [{task: lareqa, select_holdout: 256, methods: [madx]}]\n", "targets[0].methods[0]: 'madx'",
     "method madx trains a task adapter with a task head; lareqa is dual-encoder retrieval"),
    (ONE + "targets: [{task: xnli, lr: 0}]\n", "targets[0].lr: 0", "expected a number > 0"),
    (ONE + "targets: [{task: xnli, lr: fast}]\n", "targets[0].lr: 'fast'", "expected a number > 0"),
    (ONE + "intermediate: [{task: anli, epochs: -1}]\ntargets: [{task: xnli}]\n", "intermediate[0].epochs: -1",
     "expected a number > 0"),
    (ONE + "targets: [{task: xnli, batch_size: 0}]\n", "targets[0].batch_size: 0", "expected an integer >= 1"),
    (ONE + "targets: [{task: xnli, batch_size: 2.5}]\n", "targets[0].batch_size: 2.5", "expected an integer >= 1"),
    (ONE + "targets: [{task: xnli, max_train_examples: -1}]\n", "targets[0].max_train_examples: -1",
     "expected an integer >= 0"),
    (ONE + "targets: [{task: xnli, evaluate: {max_eval_examples: -5}}]\n", "targets[0].evaluate.max_eval_examples: -5",
     "expected an integer >= 0"),
    # Two texts of 8 tokens, each beside its 2 special tokens: 20; one text: 10.
    (ONE + "targets: [{task: xnli, max_length: 5}]\n", "targets[0].max_length 5",
     "expected 20 to 512 tokens: xnli (pair_classification) needs at least 20"),
    (ONE + "targets: [{task: panx, max_length: 2}]\n", "targets[0].max_length 2", "expected 10 to 512 tokens"),
    (ONE + "targets: [{task: xnli, max_length: 12.5}]\n", "targets[0].max_length: 12.5", "expected an integer"),
    ("model: xlm-roberta-base\n" + ONE + "targets: [{task: xnli, max_length: 1024}]\n", "targets[0].max_length 1024",
     "expected 20 to 512 tokens"),
    ("seeds: [1]\nmethods: [madx]\ntargets: [{task: panx}]\nlang_adapter: {max_length: 1024}\n",
     "lang_adapter.max_length 1024", "expected 10 to 512 tokens"),
    (ONE + "targets: [{task: xnli, tuned: 2}]\n", "targets[0].tuned: 2", "expected true, false or the"),
    # The bundle holds BUCC's zh-en pairs only (../shared/data/README.md).
    (ONE + "targets: [{task: bucc2018, evaluate: {langs: 'zh,de'}}]\n", "targets[0].evaluate.langs: 'zh,de'",
     "/xtreme/download/bucc2018/de-en.dev.de, "),
    (ONE + "targets: [{task: tatoeba, evaluate: {langs: de, max_eval_examples: 10}}]\n",
     "targets[0].evaluate.max_eval_examples: 10", "tatoeba is scored on sentence pairs: cap them with max_pairs"),
    # multilingual-e5-small: 12 layers, so 13 hidden states (indices -13 to 12); XLM-R Large: 24 layers.
    (ONE + "targets: [{task: tatoeba, evaluate: {langs: de, retrieval_layer: '14'}}]\n",
     "targets[0].evaluate.retrieval_layer: '14'", "expected an index into the 13 hidden states of multilingual-e5-small"),
    (ONE + "targets: [{task: tatoeba, evaluate: {langs: de, retrieval_layer: '-14'}}]\n",
     "targets[0].evaluate.retrieval_layer: '-14'", "(0 = embeddings, 12 or -1 = last layer)"),
])
def test_bad_configs_are_one_line_naming_the_file_the_key_and_the_value(tmp_path, empty_hub_cache, text, where,
                                                                        message):
    path = write(tmp_path, text)
    with pytest.raises(XstiltsInputError) as refused:
        read_config(path, DECLARED)
    assert str(refused.value).startswith(f"{path}: {where}")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    """The Hub offline with an empty datasets cache, whatever this machine's own cache holds."""
    cache = tmp_path / "hf-datasets-cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


HUB_ONLY_CELLS = ("intermediate: [{task: tydiqa, source_lang: ar}, {task: mnli}]\n"
                  "targets: [{task: pawsx, protocol: standard}]\n")


def test_hub_only_data_passes_offline_where_the_datasets_cache_has_it(tmp_path, hub_datasets):
    """The cells refused above on an empty cache, with the Hub's splits prepared in the cache (tests/hub_fixtures.py:
    the real cache layout `datasets` reads offline)."""
    config = read_config(write(tmp_path, ONE + HUB_ONLY_CELLS), DECLARED)
    assert [arm["task"] for arm in config["intermediate"]] == ["tydiqa", "mnli"]


def test_hub_only_data_is_taken_on_the_registry_s_word_online(tmp_path, empty_hub_cache, monkeypatch):
    """Online, the Hub serves what the registry names; the check does not download it to look."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    config = read_config(write(tmp_path, ONE + HUB_ONLY_CELLS), DECLARED)
    assert [target["task"] for target in config["targets"]] == ["pawsx"]


def test_a_config_that_is_not_utf8_names_its_line_and_byte(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_bytes(b"seeds: [1]\nmethods: [full]\n# caf\xe9\ntargets: [{task: xnli}]\n")
    with pytest.raises(XstiltsInputError) as refused:
        read_config(path, DECLARED)
    # "seeds: [1]\n" and "methods: [full]\n" are 27 bytes, "# caf" 5 more: the 0xe9 is byte 32, on line 3.
    assert str(refused.value) == (f"{path}:3: byte 0xe9 at byte offset 32 is not UTF-8 (invalid continuation byte); "
                                  "expected a UTF-8 text file")


def test_max_length_is_checked_against_a_local_models_positions(tmp_path, tiny_model_dir):
    # The tiny model has 140 positions, 2 of them taken by XLM-R's padding offset.
    path = write(tmp_path, f"model: {tiny_model_dir}\n{ONE}targets: [{{task: panx, max_length: 139}}]\n")
    with pytest.raises(XstiltsInputError, match="expected 10 to 138 tokens"):
        read_config(path, DECLARED)
    path.write_text(f"model: {tiny_model_dir}\n{ONE}targets: [{{task: panx, max_length: 138}}]\n", encoding="utf-8")
    assert read_config(path, DECLARED)["targets"][0]["max_length"] == 138


def test_a_declared_stand_in_makes_a_target_trainable(tmp_path):
    text = "seeds: [1]\nmethods: [full]\ntargets: [{task: xquad, train_source_override: tydiqa, select_holdout: 300}]\n"
    assert [step.entry for step in expand(read_config(write(tmp_path, text), DECLARED)).steps] == ["target", "evaluate"]


def test_methods_skip_the_tasks_they_cannot_train(tmp_path, hub_datasets):  # LAReQA trains on SQuAD
    text = "seeds: [1]\nmethods: [full, madx]\ntargets: [{task: lareqa, select_holdout: 256}]\n"
    grid = expand(read_config(write(tmp_path, text), DECLARED))
    assert grid.skipped == ["none -> lareqa x madx: " + unsupported_reason(METHODS["madx"], get_task("lareqa"))]
    assert [step.params["method"] for step in grid.steps if step.entry == "target"] == ["full"]


def test_a_target_with_its_own_methods_and_settings_trains_only_those(tmp_path):
    text = ("seeds: [1]\nmethods: [full, madx]\nlang_adapter_fallback: source\ntargets:\n"
            "  - {task: xnli, methods: [full]}\n"
            "  - {task: panx, methods: [madx, task_adapter], lr: 0.00125}\n"
            "  - {task: udpos, evaluate: {langs: 'en,de'}}\n")
    grid = expand(read_config(write(tmp_path, text), DECLARED))
    trained = [(step.params["task"], step.params["method"], step.params.get("lr")) for step in grid.steps
               if step.entry == "target"]
    assert trained == [("xnli", "full", None), ("panx", "madx", 0.00125), ("panx", "task_adapter", 0.00125),
                       ("udpos", "full", None), ("udpos", "madx", None)]
    assert all("methods" not in step.params for step in grid.steps)


def test_a_config_without_runnable_cells(tmp_path):
    path = write(tmp_path, "seeds: [1]\nmethods: [adapter_stilts]\ntargets: [{task: xnli}]\n")
    with pytest.raises(XstiltsInputError, match=f"{path}: the study has no cell that its methods can run"):
        read_config(path, DECLARED)


def test_a_retrieval_layer_is_checked_against_the_model_of_the_study(tmp_path):
    """Layer 14 of XLM-R Large's 25 hidden states is the reference study's (configs/paper.yaml)."""
    path = write(tmp_path, "model: xlm-roberta-large\n" + ONE
                 + "targets: [{task: tatoeba, evaluate: {langs: de, retrieval_layer: '14'}}]\n")
    assert read_config(path, DECLARED)["targets"][0]["evaluate"]["retrieval_layer"] == "14"


@pytest.mark.parametrize("name", ["demo.yaml", "panx-methods.yaml"])
def test_shipped_offline_configs_expand(name):
    grid = expand(read_config(PROJECT_ROOT / "configs" / name, DECLARED))
    assert grid.steps


@pytest.mark.parametrize("name", ["paper.yaml", "xtreme-r-adapters.yaml"])
def test_shipped_gpu_configs_are_refused_on_the_bundle_before_anything_trains(name, empty_hub_cache):
    """Offline, their Hub-only arms are refused first; with those in the datasets cache, UD-POS in every language,
    Thai included, whose only test treebank (PUD) the bundle leaves out: the XTREME download has it
    (tests/test_configs.py runs them shrunk to the bundle's languages)."""
    path = PROJECT_ROOT / "configs" / name
    with pytest.raises(XstiltsInputError) as refused:
        read_config(path, DECLARED)
    assert re.match(rf"{re.escape(str(path))}: intermediate\[\d+\]\.task: '[a-z_0-9]+': cannot be an intermediate "
                    "task in en: .* the Hugging Face Hub is offline", str(refused.value)), str(refused.value)


@pytest.mark.parametrize("name", ["paper.yaml", "xtreme-r-adapters.yaml"])
def test_shipped_gpu_configs_with_their_hub_data_cached_are_refused_on_the_bundle_s_languages(name, hub_datasets):
    path = PROJECT_ROOT / "configs" / name
    with pytest.raises(XstiltsInputError) as refused:
        read_config(path, DECLARED)
    assert str(refused.value).startswith(f"{path}: targets[2].evaluate.langs: '': cannot evaluate udpos [th]")


TUNED_CELL = "xnli.full.multilingual-e5-small.none.yaml"


def tuned_study(tmp_path, best_params_dir: Path) -> Path:
    return write(tmp_path, f"best_params_dir: {best_params_dir}\nseeds: [1]\nmethods: [full]\n"
                           "intermediate: [none, {task: anli}]\n"
                           "targets:\n"
                           "  - {task: xnli, tuned: true, warmup_ratio: 0.2, evaluate: {langs: en}}\n"
                           "  - {task: pawsx, lr: 0.0002, evaluate: {langs: en}}\n")


def write_tuned_cell(directory: Path, name: str, params: dict, study_run_id: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump({"cell": {}, "params": params, "study_run_id": study_run_id}), encoding="utf-8")
    return path


def test_a_tuned_target_takes_its_cells_values_and_its_run_logs_where_they_came_from(tracking_store, tmp_path,
                                                                                   monkeypatch):
    best = tmp_path / "best"
    none_file = write_tuned_cell(best, TUNED_CELL, {"lr": 0.00042, "warmup_ratio": 0.05}, "study-none")
    anli_file = write_tuned_cell(best, "xnli.full.multilingual-e5-small.anli-en.yaml", {"lr": 0.00007}, "study-anli")
    path = tuned_study(tmp_path, best)
    targets = [step for step in expand(read_config(path, DECLARED)).steps if step.entry == "target"]
    # Tuned values replace the defaults, and the target's own warmup_ratio replaces the tuned one; pawsx is untuned.
    assert [(step.params["task"], step.params.get("lr"), step.params.get("warmup_ratio")) for step in targets] == [
        ("xnli", 0.00042, 0.2), ("pawsx", 0.0002, None), ("xnli", 0.00007, 0.2), ("pawsx", 0.0002, None)]
    launch = FakeLaunch()
    monkeypatch.setattr(main, "launch", launch)
    assert run_main(path).exit_code == 0
    step_tags = {}
    for (entry, parameters), run_id in zip(launch.launched, launch.run_ids):
        if entry == "target":
            logged = MlflowClient().get_run(run_id).data.tags
            step_tags[parameters["lr"]] = {name: value for name, value in logged.items() if name.startswith("tuned")}
    assert step_tags == {
        "0.00042": {"tuned/lr": "0.00042", "tuned_from_run": "study-none", "tuned_file": str(none_file)},
        "7e-05": {"tuned/lr": "7e-05", "tuned_from_run": "study-anli", "tuned_file": str(anli_file)},
        "0.0002": {}}


def test_a_missing_tuned_cell_names_its_file_and_the_tune_command_that_writes_it(tmp_path):
    best = tmp_path / "best"
    write_tuned_cell(best, TUNED_CELL, {"lr": 0.00042}, "study-none")
    path = tuned_study(tmp_path, best)
    with pytest.raises(XstiltsInputError) as refused:
        read_config(path, DECLARED)
    assert str(refused.value) == (
        f"{path}: targets[0].tuned: True: no tuned values for cell xnli.full.multilingual-e5-small.anli-en: "
        f"{best / 'xnli.full.multilingual-e5-small.anli-en.yaml'} does not exist; write it with: mlflow run . -e tune "
        f"-P method=full -P model=multilingual-e5-small -P task=xnli -P warmup_ratio=0.2 -P best_params_dir={best} "
        "-P init_run_id=<run id of an intermediate anli-en run>")


def test_a_target_can_take_one_tuned_cell_for_every_arm(tmp_path):
    best = tmp_path / "best"
    write_tuned_cell(best, TUNED_CELL, {"lr": 0.00042}, "study-none")
    path = tuned_study(tmp_path, best)
    path.write_text(path.read_text(encoding="utf-8").replace("tuned: true", "tuned: none"), encoding="utf-8")
    targets = [step for step in expand(read_config(path, DECLARED)).steps if step.entry == "target"]
    assert [(step.params["task"], step.params["lr"], step.tags.get("tuned_from_run")) for step in targets] == [
        ("xnli", 0.00042, "study-none"), ("pawsx", 0.0002, None), ("xnli", 0.00042, "study-none"),
        ("pawsx", 0.0002, None)]


def test_language_adapters_leave_out_what_every_target_they_serve_evaluates(tmp_path, hub_datasets):
    text = ("seeds: [1]\nmethods: [madx]\nlang_adapter_fallback: source\ntargets:\n"
            "  - {task: xnli, protocol: dev-split}\n"
            "  - {task: panx}\n"
            "  - {task: udpos, protocol: standard, methods: [full], evaluate: {langs: 'en,de'}}\n"
            "  - {task: lareqa, protocol: standard, select_holdout: 256}\n")
    grid = expand(read_config(write(tmp_path, text), DECLARED))
    # XNLI and PAN-X train with madx; UD-POS with full fine-tuning alone, and madx cannot train LAReQA: one adapter per
    # language serves both madx targets, under dev-split and auto (PAN-X's default).
    assert {step.params["protocol"] for step in grid.steps if step.entry == "lang_adapter"} == {"auto,dev-split"}
    assert len([step for step in grid.steps if step.entry == "lang_adapter"]) == len(
        set(get_task("xnli").langs) | set(get_task("panx").langs))


# xtreme-r-adapters trains its adapters on Wikipedia (online) for languages whose evaluation data the bundle lacks.
@pytest.mark.parametrize("name", ["demo.yaml", pytest.param("panx-methods.yaml", marks=pytest.mark.integration)])
def test_shipped_configs_train_language_adapters_that_their_evaluations_accept(name):
    grid = expand(read_config(PROJECT_ROOT / "configs" / name, DECLARED))
    steps = {step.key: step for step in grid.steps}
    checked = set()
    for step in grid.steps:
        if "lang_adapter_runs" not in step.params:
            continue
        trained = steps[step.params["train_run_id"].keys[0]]
        for key in (*trained.params["lang_adapter_run_id"].keys, *step.params["lang_adapter_runs"].keys):
            adapter = steps[key].params
            corpus = build_corpus(adapter["lang"], "bundle", studied_tasks(adapter.get("exclude_eval_of", "all")),
                                  evaluation_protocols(adapter["protocol"]))
            check_exclusion_covers(key, corpus.params(), get_task(trained.params["task"]),
                                   trained.params.get("protocol", "auto"), adapter["lang"],
                                   int(step.params.get("max_eval_examples", 0)))
            checked.add(key)
    assert checked == {step.key for step in grid.steps if step.entry == "lang_adapter"}


class FakeLaunch:
    """Stands in for `mlflow run`: records the launch and leaves a FINISHED (or FAILED) run as the entry would."""

    def __init__(self, fail_entry: str = ""):
        self.launched, self.run_ids, self.fail_entry = [], [], fail_entry

    def __call__(self, entry, parameters, key, parent_run_id, experiment_id, tags=None):
        client = MlflowClient()
        run_id = tracking.create_step_run(experiment_id, entry, key, parent_run_id, tags=tags)
        self.launched.append((entry, parameters))
        self.run_ids.append(run_id)
        failed = entry == self.fail_entry
        client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
        if failed:
            raise RuntimeError(f"run {run_id} FAILED")
        return run_id

    def run_id_of(self, entry: str) -> str:
        return self.run_ids[[launched for launched, _ in self.launched].index(entry)]


SMALL = "seeds: [1]\nmethods: [full]\nintermediate: [none, {task: anli}]\ntargets: [{task: xnli}]\n"


def run_main(path, *args):
    return CliRunner().invoke(main.main, ["--config", str(path), *args])


@pytest.fixture(autouse=True)
def fixed_code_version(monkeypatch):
    """The cache keys of these tests must not depend on the working tree's files (edited while tests run)."""
    monkeypatch.setattr(main, "code_version", lambda root: "code-v1")


def test_rerun_reuses_every_finished_step_and_force_reruns_chosen_ones(tracking_store, tmp_path, monkeypatch):
    fake = FakeLaunch()
    monkeypatch.setattr(main, "launch", fake)
    path = write(tmp_path, SMALL)
    first = run_main(path)
    assert first.exit_code == 0, first.output
    # none -> xnli: target, evaluate; anli -> xnli: intermediate, target, evaluate.
    assert sorted(entry for entry, _ in fake.launched) == ["evaluate", "evaluate", "intermediate", "target", "target"]
    stilts_target = next(params for entry, params in fake.launched if entry == "target" and params.get("init_run_id"))
    assert stilts_target["init_run_id"] == fake.run_id_of("intermediate")
    second = run_main(path)
    assert second.exit_code == 0 and len(fake.launched) == 5, second.output
    assert "done 0, cached 5, failed 0, blocked 0, remaining 0" in second.output
    third = run_main(path, "--force", "evaluate")
    assert [entry for entry, _ in fake.launched[5:]] == ["evaluate", "evaluate"], third.output
    parents = [run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
               if run.data.tags.get("xlt.phase") == "main"]
    assert len(parents) == 3 and {run.info.status for run in parents} == {"FINISHED"}
    latest = max(parents, key=lambda run: run.info.start_time)
    assert latest.data.metrics["grid/cached"] == 3 and latest.data.metrics["grid/done"] == 2
    assert {MlflowClient().get_run(run_id).data.tags["mlflow.parentRunId"] for run_id in fake.run_ids[5:]} == {
        latest.info.run_id}


def test_a_run_left_running_is_marked_failed_and_redone(tracking_store, tmp_path, monkeypatch):
    fake = FakeLaunch()
    monkeypatch.setattr(main, "launch", fake)
    path = write(tmp_path, "seeds: [1]\nmethods: [full]\ntargets: [{task: xnli}]\n")
    assert run_main(path).exit_code == 0
    client = MlflowClient()
    killed = fake.run_id_of("evaluate")
    client.update_run(killed, status="RUNNING")  # what a kill -9 of the study leaves behind
    result = run_main(path)
    assert result.exit_code == 0, result.output
    assert [entry for entry, _ in fake.launched] == ["target", "evaluate", "evaluate"]
    assert client.get_run(killed).info.status == "FAILED"


def test_a_failed_step_blocks_its_cell_and_fails_the_study(tracking_store, tmp_path, monkeypatch):
    monkeypatch.setattr(main, "launch", FakeLaunch(fail_entry="intermediate"))
    result = run_main(write(tmp_path, SMALL))
    assert result.exit_code == 2
    assert "done 2, cached 0, failed 1, blocked 2, remaining 0" in result.output
    assert "rerun the same command to resume" in result.output
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert "RUNNING" not in {run.info.status for run in runs}


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("xstilts: error:")]


@pytest.mark.parametrize("text, value", [
    ("seeds: [1]\nmethods: [fine]\ntargets: [{task: xnli}]\n", "'fine'"),
    ("seeds: [1]\nmethods: [full]\ntargets: [{task: xnlii}]\n", "'xnlii'"),
    ("seeds: [1]\nmethods: [full]\ntargets: [{task: xnli, evaluate: {langs: xx}}]\n", "'xx'"),
    ("model: xlmr-tiny\nseeds: [1]\nmethods: [full]\ntargets: [{task: xnli}]\n", "'xlmr-tiny'"),
    ("seeds: [1]\nmethods: [full]\ntargets: [{task: lareqa}]\n", "select_holdout"),
])
def test_a_bad_config_is_one_error_line_and_leaves_no_run(tracking_store, hub_datasets, tmp_path, text, value):
    """(LAReQA trains on SQuAD: `hub_datasets` has it.)"""
    path = write(tmp_path, text)
    result = run_main(path)
    assert result.exit_code == 2
    [line] = error_lines(result.output)
    assert str(path) in line and value in line
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_a_tracking_server_that_is_down_is_named_after_a_bounded_retry(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    result = run_main(write(tmp_path, SMALL))
    assert time.monotonic() - started < 30
    assert result.exit_code == 2
    [line] = error_lines(result.output)
    assert f"the tracking server {uri} (MLFLOW_TRACKING_URI) does not answer after 3 tries" in line


def test_a_launch_refused_before_its_entry_point_starts_leaves_its_step_run_failed(tracking_store, monkeypatch):
    def refuse(directory):
        raise ValueError("no such parameter type")

    monkeypatch.setattr(main, "load_project", refuse)
    experiment_id = MlflowClient().create_experiment("launches")
    with pytest.raises(RuntimeError, match="FAILED: no such parameter type"):
        main.launch("target", {"task": "xnli"}, "key1", "", experiment_id)
    (run,) = MlflowClient().search_runs([experiment_id])
    assert (run.info.status, run.data.tags[tracking.CACHE_KEY_TAG]) == ("FAILED", "key1")


def test_workers_need_a_tracking_server(tracking_store, tmp_path):
    result = run_main(write(tmp_path, SMALL), "--workers", "2")
    assert result.exit_code == 2 and "needs a tracking server" in result.output


@contextmanager
def running_tracking_server(port: int):
    """A real MLflow tracking server on PostgreSQL (scripts/tracking_server.sh), as users start it; its URI."""
    folder = Path(tempfile.mkdtemp(prefix="xstilts-server-", dir="/tmp"))
    folder.chmod(0o755)  # the PostgreSQL cluster inside belongs to the postgres user
    script = str(PROJECT_ROOT / "scripts" / "tracking_server.sh")
    started = subprocess.run(["bash", script, "start", str(folder), str(port)], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip()
    subprocess.run(["bash", script, "stop", str(folder)], check=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server():
    with running_tracking_server(5057) as uri:
        yield uri


class MeetingLaunch(FakeLaunch):
    """Target launches wait for each other at a barrier: they pass only if they run at the same time."""

    def __init__(self):
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=60)

    def __call__(self, entry, *args):
        if entry == "target":
            self.barrier.wait()
        return super().__call__(entry, *args)


def test_two_workers_run_independent_steps_at_once_on_a_tracking_server(tracking_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    mlflow.set_tracking_uri(tracking_server)
    monkeypatch.setattr(main, "launch", MeetingLaunch())
    path = write(tmp_path, "seeds: [1, 2]\nmethods: [full]\ntargets: [{task: xnli}]\n")
    result = run_main(path, "--workers", "2")  # one worker would leave the first target waiting for the second
    assert result.exit_code == 0 and "done 4, cached 0, failed 0" in result.output, result.output
    launcher = main.launch
    again = run_main(path, "--workers", "2")
    assert "done 0, cached 4" in again.output, again.output
    [rerun] = MlflowClient().search_runs([mlflow.get_experiment_by_name("Default").experiment_id],
                                         "tags.`xlt.phase` = 'main'", order_by=["attributes.start_time DESC"],
                                         max_results=1)
    assert sorted(rerun.data.tags["xlt.reused_runs"].split(",")) == sorted(launcher.run_ids)


@pytest.mark.parametrize("workers, environ, expected", [
    (1, {}, {}),  # torch's own default: a thread per physical core
    (2, {}, {"OMP_NUM_THREADS": "8"}),
    (3, {}, {"OMP_NUM_THREADS": "5"}),
    (32, {}, {"OMP_NUM_THREADS": "1"}),
    (2, {"OMP_NUM_THREADS": "4"}, {}),  # the user's setting stays
])
def test_processes_that_run_at_once_share_the_cores(workers, environ, expected):
    assert threads_per_process(workers, environ, cpu_count=16) == expected


class SlowArmLaunch(FakeLaunch):
    """The intermediate step of one arm takes `seconds`; every other step is instant."""

    def __init__(self, slow_label_task: str, seconds: float):
        super().__init__()
        self.slow_task, self.seconds = slow_label_task, seconds

    def __call__(self, entry, parameters, *args):
        if entry == "intermediate" and parameters["task"] == self.slow_task:
            time.sleep(self.seconds)
        return super().__call__(entry, parameters, *args)


def test_a_step_starts_when_its_own_upstream_steps_end_not_when_its_level_does(tracking_server, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "dag-order")
    launch = SlowArmLaunch("anli", seconds=4)
    monkeypatch.setattr(main, "launch", launch)
    path = write(tmp_path, "seeds: [1]\nmethods: [full]\nintermediate: [{task: anli}, {task: xnli}]\n"
                           "targets: [{task: pawsx}]\n")
    result = run_main(path, "--workers", "3")
    assert result.exit_code == 0, result.output
    runs = {(entry, parameters.get("task"), bool(parameters.get("init_run_id"))): MlflowClient().get_run(run_id).info
            for (entry, parameters), run_id in zip(launch.launched, launch.run_ids)}
    slow_intermediate = next(info for (entry, task, _), info in runs.items() if (entry, task) == ("intermediate",
                                                                                                   "anli"))
    fast_intermediate_id = next(run_id for (entry, parameters), run_id in zip(launch.launched, launch.run_ids)
                                if entry == "intermediate" and parameters["task"] == "xnli")
    fast_target = next(MlflowClient().get_run(run_id).info for (entry, parameters), run_id
                       in zip(launch.launched, launch.run_ids)
                       if entry == "target" and parameters["init_run_id"] == fast_intermediate_id)
    # Level by level, the xnli arm's target (level 1) would wait for the anli intermediate (level 0) to end.
    assert fast_target.start_time < slow_intermediate.end_time - 2000, (fast_target, slow_intermediate)


class DyingLaunch(FakeLaunch):
    """The first `deaths` launches of `entry` die mid-step: their run stays RUNNING, as after a kill -9."""

    def __init__(self, entry: str, deaths: int):
        super().__init__()
        self.dying_entry, self.deaths, self.dead_run_ids = entry, deaths, []

    def __call__(self, entry, parameters, key, parent_run_id, experiment_id, tags=None):
        if entry == self.dying_entry and len(self.dead_run_ids) < self.deaths:
            self.dead_run_ids.append(tracking.create_step_run(experiment_id, entry, key, parent_run_id, tags=tags))
            raise executors.StepDied(f"run {self.dead_run_ids[-1]} FAILED: its process was killed (exit status -9)")
        return super().__call__(entry, parameters, key, parent_run_id, experiment_id, tags)


@pytest.mark.parametrize("max_retries, deaths, expected", [
    (1, 1, "done 5, cached 0, failed 0, blocked 0, remaining 0"),  # the retry finishes
    (1, 2, "done 2, cached 0, failed 1, blocked 2, remaining 0"),  # the retry dies too: its cell is blocked
    (0, 1, "done 2, cached 0, failed 1, blocked 2, remaining 0"),
])
def test_a_step_whose_process_died_ends_failed_and_is_retried(tracking_store, tmp_path, monkeypatch, max_retries,
                                                              deaths, expected):
    launch = DyingLaunch("intermediate", deaths)
    monkeypatch.setattr(main, "launch", launch)
    result = run_main(write(tmp_path, SMALL), "--max-retries", str(max_retries))
    assert expected in result.output, result.output
    assert result.output.count("retry   intermediate anli[en] full seed 1") == min(deaths, max_retries)
    assert {MlflowClient().get_run(run_id).info.status for run_id in launch.dead_run_ids} == {"FAILED"}
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert "RUNNING" not in {run.info.status for run in runs}


def test_a_failed_step_with_its_own_error_is_not_retried(tracking_store, tmp_path, monkeypatch):
    launch = FakeLaunch(fail_entry="intermediate")
    monkeypatch.setattr(main, "launch", launch)
    result = run_main(write(tmp_path, SMALL), "--max-retries", "3")
    assert "retry" not in result.output and [entry for entry, _ in launch.launched].count("intermediate") == 1


class SecondDriverLaunch(FakeLaunch):
    """While the first step of a study runs, a second driver of the same config is started."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.second = path, None

    def __call__(self, *args):
        if self.second is None:
            self.second = run_main(self.path)
        return super().__call__(*args)


def test_a_second_driver_of_a_live_study_refuses_naming_its_run_and_trains_nothing(tracking_store, tmp_path,
                                                                                 monkeypatch):
    path = write(tmp_path, SMALL)
    launch = SecondDriverLaunch(path)
    monkeypatch.setattr(main, "launch", launch)
    first = run_main(path)
    assert first.exit_code == 0 and "done 5, cached 0, failed 0" in first.output, first.output
    [study_run] = [run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
                   if run.data.tags.get("xlt.phase") == "main"]
    assert launch.second.exit_code == 2
    [line] = error_lines(launch.second.output)
    assert line.startswith(f"xstilts: error: study run {study_run.info.run_id} of this config is RUNNING and its "
                           f"driver, process {os.getpid()} on this host, is alive: another driver runs this study"), line
    assert len(launch.launched) == 5  # every step once, by the first driver
    assert study_run.info.status == "FINISHED" and float(study_run.data.tags["xlt.heartbeat"]) > time.time() - 60


def test_a_killed_drivers_study_is_taken_over_at_once(tracking_store, tmp_path, monkeypatch):
    """A driver SIGKILLed mid-step leaves its study run RUNNING with a fresh heartbeat; on its host, the next
    driver sees that the process is gone and takes over."""
    path = write(tmp_path, SMALL)
    hanging = ("import sys, time\nfrom pipelines import main\n"
               "main.launch = lambda *args, **kwargs: time.sleep(3600)\n"
               "main.main(['--config', sys.argv[1]])\n")
    driver = subprocess.Popen([sys.executable, "-c", hanging, str(path)], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    deadline = time.monotonic() + 120
    while not tracking.running_run_ids({"phase": "main"}):
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    [killed_study] = tracking.running_run_ids({"phase": "main"})
    driver.kill()
    driver.wait()
    monkeypatch.setattr(main, "launch", FakeLaunch())
    result = run_main(path)
    assert result.exit_code == 0, result.output
    assert (f"study run {killed_study} of this config was left RUNNING by a driver that is gone (its driver, process "
            f"{driver.pid} on this host, is gone): marked FAILED") in result.output
    assert MlflowClient().get_run(killed_study).info.status == "FAILED"


@pytest.mark.parametrize("driver, age, alive", [
    ("elsewhere 4242 1700000000", 5, True),  # another host: the heartbeat decides
    ("elsewhere 4242 1700000000", 61, False),  # older than the 60 s timeout
    (f"{socket.gethostname()} {os.getpid()} 1", 5, False),  # this host, a pid now used by a process started later
])
def test_a_driver_lives_while_its_heartbeat_is_fresh_or_its_process_runs(driver, age, alive):
    tags = {"xlt.driver": driver, "xlt.heartbeat": str(time.time() - age)}
    assert executors.driver_is_alive(tags, time.time())[0] is alive


@pytest.mark.parametrize("args, named", [
    (["--executor", "foo"], "'foo' is not one of 'local', 'ray'"),
    (["--max-retries", "-1"], "-1 is not in the range x>=0"),
])
def test_a_bad_executor_option_is_refused_before_any_run(tracking_store, tmp_path, args, named):
    result = run_main(write(tmp_path, SMALL), *args)
    assert result.exit_code == 2 and named in result.output, result.output
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


@pytest.mark.parametrize("resources, message", [
    ("{train: {gpus: 1}}", "resources.train: unknown entry point; expected some of: lang_adapter, intermediate"),
    ("{target: {gpus: -1}}", "resources.target.gpus: -1: expected a number >= 0"),
    ("{target: {tpus: 1}}", "resources.target.tpus: unknown resource; expected gpus or cpus"),
    ("{target: 2}", "each entry of `resources.target:` must be a mapping"),
])
def test_bad_resources_are_named(tmp_path, resources, message):
    path = write(tmp_path, SMALL + f"resources: {resources}\n")
    with pytest.raises(XstiltsInputError, match=re.escape(message)):
        read_config(path, DECLARED)


def test_a_resource_request_this_machine_cannot_meet_is_refused_before_any_run(tracking_store, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(main, "launch", FakeLaunch())
    monkeypatch.setattr(executors, "local_gpu_ids", lambda: [])
    result = run_main(write(tmp_path, SMALL + "resources: {evaluate: {gpus: 1}}\n"))
    assert result.exit_code == 2
    [line] = error_lines(result.output)
    assert (f"step evaluate xnli full from none seed 1: resources.evaluate {{gpus: 1, cpus: 1}}: more than any node "
            f"of this machine ({socket.gethostname()}) has") in line, line
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


@pytest.mark.parametrize("workers, gpus, expected", [
    (2, ["0", "1"], [["0"], ["1"]]),  # each running step its own GPU
    (1, ["0", "1"], [[None]]),  # one step at a time sees every GPU
    (3, [], [[None], [None], [None]]),  # no GPU: nothing set
])
def test_steps_that_run_at_once_on_a_multi_gpu_machine_get_a_gpu_each(workers, gpus, expected):
    local = executors.LocalExecutor(workers, lambda: None, gpus)
    taken = [[local._take_gpu()] for _ in expected]
    assert taken == expected


def test_a_launch_gives_its_step_process_its_gpu_without_touching_this_process(tracking_store, monkeypatch):
    started = []
    monkeypatch.setattr(executors, "run_step_process", lambda command, environment: started.append(environment) or 0)
    experiment_id = MlflowClient().create_experiment("gpus")
    before = dict(os.environ)
    run_id = main.launch("target", {"task": "xnli"}, "key1", "", experiment_id, devices="1")
    [environment] = started
    assert (environment["CUDA_VISIBLE_DEVICES"], environment["MLFLOW_RUN_ID"]) == ("1", run_id)
    assert dict(os.environ) == before
    run = MlflowClient().get_run(run_id)
    assert (run.info.status, run.data.tags["xlt.devices"], run.data.tags["xlt.node"]) == (
        "FINISHED", "1", socket.gethostname())


def test_of_two_drivers_started_at_once_the_younger_gives_way(tracking_store):
    client = MlflowClient()
    experiment_id = client.create_experiment("race")
    tags = {"xlt.phase": "main", "xlt.study_key": "k1", "xlt.heartbeat": f"{time.time():.0f}",
            "xlt.driver": executors.driver_identity()}  # both alive: this process
    older = client.create_run(experiment_id, start_time=1_000, tags=tags).info.run_id
    younger = client.create_run(experiment_id, start_time=2_000, tags=tags).info.run_id
    main.yield_to_older_driver({"study_key": "k1"}, older)  # the older one goes on
    with pytest.raises(XstiltsInputError, match=f"study run {older} of this config is RUNNING"):
        main.yield_to_older_driver({"study_key": "k1"}, younger)


def test_the_scheduling_benchmarks_critical_path_and_level_sum_are_worked_out_by_hand(tmp_path):
    from benchmarks.scheduling import GRID, step_durations

    # Fast steps 2 s, the none arm's targets 6 s. Critical path: none target 6 + its evaluation 2 = 8 (an arm with an
    # intermediate run: 2 + 2 + 2 = 6). Levels: {none targets, intermediates} 6, {none evaluations, other targets} 2,
    # {other evaluations} 2 = 10. The widest level, per seed: 2 none evaluations + 2 arms x 2 targets, x 2 seeds = 12.
    assert step_durations(write(tmp_path, GRID), 2.0) == (8.0, 10.0, 12)

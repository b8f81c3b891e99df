"""One definition per option: the MLproject, the click commands and the defaults agree; `--help` teaches and is fast."""

import importlib
import shlex
import subprocess
import sys
import time

import click
import pytest
from mlflow.projects import _project_spec

from components import options
from components.options import ENTRY_MODULES, ENTRY_POINTS
from components.settings import PROJECT_ROOT
from scripts import generate_mlproject

# A value for each required option, on both sides of a comparison.
REQUIRED = {"lang_adapter": {"lang": "sw"}}
HELP_SECONDS = 3.0


def command_of(entry: str) -> click.Command:
    return importlib.import_module(ENTRY_MODULES[entry]).main


def parsed(entry: str, arguments: list[str]) -> dict:
    """The option values `python -m <entry module> <arguments>` hands to its implementation."""
    return command_of(entry).make_context(ENTRY_MODULES[entry], list(arguments)).params


def required_arguments(entry: str) -> list[str]:
    return [word for name, value in REQUIRED.get(entry, {}).items() for word in (f"--{name}", value)]


def test_the_committed_mlproject_is_the_generated_one():
    assert (PROJECT_ROOT / "MLproject").read_text(encoding="utf-8") == generate_mlproject.mlproject(), \
        "MLproject is out of date: run python scripts/generate_mlproject.py"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_mlflow_run_without_parameters_runs_what_python_m_runs_without_options(entry):
    """`mlflow run . -e <entry>` with no -P (MLflow's own parsing of the MLproject) resolves every option to what
    `python -m <module>` with no options resolves it to, and logs each default as that value's `str`."""
    entry_point = _project_spec.load_project(str(PROJECT_ROOT)).get_entry_point(entry)
    command = shlex.split(entry_point.compute_command(REQUIRED.get(entry, {}), storage_dir=None))
    assert command[:3] == ["python", "-m", ENTRY_MODULES[entry]]
    defaults = parsed(entry, required_arguments(entry))
    assert parsed(entry, command[3:]) == defaults

    logged, extra = entry_point.compute_parameters(REQUIRED.get(entry, {}), storage_dir=None)
    assert extra == {}
    assert {name: shlex.split(value)[0] if value != "''" else "" for name, value in logged.items()} == \
        {name: str(value) for name, value in defaults.items()}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_click_option_is_an_mlproject_parameter_and_back(entry):
    declared = set(_project_spec.load_project(str(PROJECT_ROOT)).get_entry_point(entry).parameters)
    command = command_of(entry)
    assert {param.name for param in command.params} == declared
    for param in command.params:
        assert param.opts == ["--" + param.name.replace("_", "-")], "one name per concept: the flag is the -P name"
        assert param.help, f"{entry} --{param.name} has no help"


def test_defaults_decided_once():
    """The values the MLproject had (and study configs and README numbers used), now everywhere."""
    from components.adapters import DEFAULT_TASK_REDUCTION_FACTOR, LangAdapterConfig
    from components.training import TrainConfig

    assert parsed("target", [])["epochs"] == TrainConfig().epochs == 3.0
    assert parsed("intermediate", [])["epochs"] == 1.0
    assert (parsed("tune", [])["evals_per_epoch"], parsed("target", [])["evals_per_epoch"]) == (2, 1)
    train_config = TrainConfig()
    assert {name: getattr(train_config, name) for name in parsed("target", []) if hasattr(train_config, name)} == \
        {name: value for name, value in parsed("target", []).items() if hasattr(train_config, name)}
    lang_defaults = parsed("lang_adapter", ["--lang", "sw"])
    assert LangAdapterConfig().reduction_factor == lang_defaults["lang_reduction_factor"] == 2.0
    assert (LangAdapterConfig().max_steps, LangAdapterConfig().lr) == (lang_defaults["max_steps"], 1e-4)
    assert DEFAULT_TASK_REDUCTION_FACTOR == parsed("target", [])["task_reduction_factor"] == 16.0


def test_closed_sets_match_the_code_that_reads_them():
    from analysis.typology import DEFAULT_DISTANCE, DISTANCE_KINDS
    from components.corpus import ALL_TASKS, AUTO_PROTOCOL, BUNDLE_SOURCE
    from components.data import PROTOCOLS
    from components.methods import METHODS
    from components.models import DEFAULT_MODEL
    from components.retrieval import RETRIEVAL_TASKS
    from components.tasks import TASKS, TaskType
    from components.training import PRECISIONS
    from tuning.best_params import DEFAULT_DIR
    from tuning.study import PRUNERS

    assert options.METHOD_NAMES == tuple(METHODS)
    assert options.PROTOCOL_NAMES == (*PROTOCOLS, AUTO_PROTOCOL)
    assert set(options.RETRIEVAL_TASK_NAMES) == {*RETRIEVAL_TASKS, *(name for name, spec in TASKS.items()
                                                                   if spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL)}
    assert options.PRUNER_NAMES == tuple(PRUNERS)
    assert options.DISTANCE_KINDS == DISTANCE_KINDS
    assert options.PRECISIONS == PRECISIONS
    assert options.DEFAULT_MODEL == DEFAULT_MODEL
    lang_defaults = parsed("lang_adapter", ["--lang", "sw"])
    assert (lang_defaults["text_source"], lang_defaults["exclude_eval_of"], lang_defaults["protocol"]) == \
        (BUNDLE_SOURCE, ALL_TASKS, AUTO_PROTOCOL)
    assert parsed("analysis", [])["distance"] == DEFAULT_DISTANCE
    assert PROJECT_ROOT / parsed("tune", [])["best_params_dir"] == DEFAULT_DIR


def test_closed_sets_are_refused_at_parse_time_and_the_task_help_lists_the_registry():
    from click.testing import CliRunner
    from components.tasks import TASKS

    result = CliRunner().invoke(command_of("target"), ["--method", "lora"])
    assert result.exit_code == 2 and "'lora' is not one of 'full', 'madx'" in result.output
    result = CliRunner().invoke(command_of("target"), ["--protocol", "sometimes"])
    assert result.exit_code == 2 and "'sometimes' is not one of 'standard', 'dev-split'" in result.output
    result = CliRunner().invoke(command_of("evaluate"), ["--retrieval-task", "tatoeba", "--retrieval-pooling", "max"])
    assert result.exit_code == 2 and "'max' is not one of '', 'mean', 'cls'" in result.output
    help_text = " ".join(CliRunner().invoke(command_of("target"), ["--help"]).output.split())
    assert all(name in help_text for name in TASKS) and "[fp32|bf16|fp16]" in help_text
    assert "[standard|dev-split|target-dev|auto]" in help_text


def run_module(module: str, *arguments: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", module, *arguments], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=60)
    return result, time.monotonic() - start


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_teaches_and_answers_fast(entry):
    result, seconds = run_module(ENTRY_MODULES[entry], "--help")
    assert result.returncode == 0, result.stderr
    assert seconds < HELP_SECONDS, f"{ENTRY_MODULES[entry]} --help took {seconds:.1f} s"
    text = " ".join(result.stdout.split())
    assert "Reads:" in text and "Writes:" in text
    assert all(option.flag in text for option in ENTRY_POINTS[entry])


def test_a_bad_argument_fails_fast_naming_the_option():
    result, seconds = run_module("pipelines.target", "--epochs", "abc")
    assert result.returncode == 2 and seconds < HELP_SECONDS, (result.stderr, seconds)
    assert "Invalid value for '--epochs': 'abc' is not a valid float" in result.stderr


@pytest.mark.parametrize("module, arguments, message", [
    # XNLI is a pair task: two texts of 8 tokens, each beside 2 special tokens.
    ("pipelines.target", ("--max-length", "2"), "max_length 2: expected 20 to 512 tokens"),
    ("pipelines.intermediate", ("--task", "anli,xnlii"), "unknown task 'xnlii'"),
    ("pipelines.lang_adapter", ("--lang", "sw", "--max-length", "1024"), "max_length 1024: expected 10 to 512 tokens"),
    ("pipelines.tune", ("--task", "panx", "--model", "nope"), "unknown model 'nope'"),
])
def test_a_bad_max_length_task_or_model_fails_as_fast_as_a_bad_argument(module, arguments, message):
    result, seconds = run_module(module, *arguments)
    assert result.returncode == 2 and seconds < HELP_SECONDS, (result.stderr, seconds)
    assert result.stderr.startswith(f"xstilts: error: {message}"), result.stderr

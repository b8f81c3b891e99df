"""A `target` run's trained model as `evaluate` loads it, and its predictions on inputs without gold labels.

`evaluate` scores a run's model through `load_trained_model`; the MLflow model each such run logs
(`components/mlflow_model.py`, a pyfunc "model from code" whose weights stay the run's own artifacts) loads it the same
way and predicts with the same code (`components.evaluation.predict_examples`), so that the two answer alike.

The MLflow model's input is a pandas DataFrame with one row per item and the columns of the task's examples
(`INPUT_COLUMNS`: sentence(s) for classification, a list of words for tagging, question and context for QA,
context, question and choices for multiple choice), plus an optional `lang` column that picks the language adapter of
an adapter run (default: its model_config's `pyfunc/lang`, the run's source language).
"""

from pathlib import Path

from components import tracking
from components.adapter_runs import LangAdapterUse, lang_adapter_plan, load_adapter_task_model
from components.data import Example
from components.errors import XstiltsInputError
from components.evaluation import predict_examples
from components.methods import METHODS, Method
from components.models import load_pretrained, load_tokenizer, resolve_model
from components.tasks import TaskSpec, TaskType
from components.task_types import handler_for

# Per task type the MLflow model predicts, (required, optional) input columns: what `evaluate` reads of an example,
# less its gold labels.
INPUT_COLUMNS = {
    TaskType.PAIR_CLASSIFICATION: (("text_a", "text_b"), ()),
    TaskType.SINGLE_CLASSIFICATION: (("text_a",), ()),
    TaskType.TOKEN_CLASSIFICATION: (("tokens",), ()),
    TaskType.MULTIPLE_CHOICE: (("context", "question", "choices"), ()),
    TaskType.EXTRACTIVE_QA: (("question", "context"), ("id",)),
}
LIST_COLUMNS = ("tokens", "choices")
LANG_COLUMN = "lang"
PREDICTION_BATCH_SIZE = 32


def predicts_labels(spec: TaskSpec) -> bool:
    """Whether a run of `spec` gets an MLflow model that predicts: the dual-encoder tasks rank a pool instead."""
    return spec.task_type in INPUT_COLUMNS


# The keys of the MLflow model's model_config. MLflow also logs a model_config as params of the run that logs the
# model: the prefix keeps them apart from the run's own params (a `batch_size` would clash) and groups them in the UI.
CONFIG_PREFIX = "pyfunc/"
RUN_KEY, LANG_KEY, LANGS_KEY, LANG_ADAPTER_RUNS_KEY, FALLBACK_KEY, BATCH_SIZE_KEY = (
    f"{CONFIG_PREFIX}{name}" for name in ("run_id", "lang", "langs", "lang_adapter_runs", "lang_adapter_fallback",
                                          "batch_size"))


def mlflow_model_config(run_id: str, source_lang: str) -> dict[str, str | int]:
    """The model_config of run `run_id`'s MLflow model: the run, the default language of input rows, evaluate's
    options for language adapters (the languages to load adapters for, their lang_adapter runs, the fallback) and the
    batch size, with their defaults; each can be overridden at `mlflow.pyfunc.load_model(..., model_config=...)`."""
    return {RUN_KEY: run_id, LANG_KEY: source_lang, LANGS_KEY: source_lang, LANG_ADAPTER_RUNS_KEY: "",
            FALLBACK_KEY: "", BATCH_SIZE_KEY: PREDICTION_BATCH_SIZE}


def lang_adapter_choice(method: Method, run_params: dict, languages: list[str], run_ids: str,
                        fallback: str) -> dict[str, LangAdapterUse]:
    """The language adapter of each language for a `method` run (none unless it stacks on language adapters)."""
    if not method.lang_adapters:
        given = [name for name, value in (("lang_adapter_runs", run_ids), ("lang_adapter_fallback", fallback))
                 if value]
        if given:
            raise XstiltsInputError(f"{', '.join(given)}: the run's method {method.name} uses no language adapters")
        return {lang: LangAdapterUse("", "", f"none (method {method.name})") for lang in languages}
    return lang_adapter_plan(languages, run_params["source_lang"], run_params["lang_adapter_run_id"], run_ids,
                             fallback)


def load_trained_model(train_run_id: str, run_params: dict, spec: TaskSpec, plan: dict[str, LangAdapterUse],
                       work_dir: Path):
    """(model, tokenizer, use_language) of a FINISHED `target` run: its `model/`, or for an adapter method its base
    model with its task adapter, head and the language adapters of `plan`; `use_language(lang)` activates what
    scores `lang`."""
    if METHODS[run_params.get("method", "full")].adapters:
        return load_adapter_task_model(train_run_id, run_params, spec, plan, work_dir)
    trained = resolve_model(str(tracking.download_model(train_run_id, "target", work_dir)))
    model = load_pretrained(handler_for(spec).auto_model, trained)
    return model, load_tokenizer(trained), _one_model_for_every_language


def _one_model_for_every_language(lang: str) -> None:
    """Full fine-tuning: nothing to swap between languages."""


def model_labels(model) -> tuple[str, ...]:
    return tuple(model.config.id2label[index] for index in range(model.config.num_labels))


def unlabelled_examples(spec: TaskSpec, rows: list[dict], labels: tuple[str, ...]) -> list[Example]:
    """`rows` (input columns) as examples of the task: the gold fields encoding reads get placeholders, which
    prediction ignores.

    Raises:
        XstiltsInputError: a row lacks one of the task type's input columns.
    """
    required, optional = INPUT_COLUMNS[spec.task_type]
    for position, row in enumerate(rows):
        missing = [column for column in required if column not in row]
        if missing:
            raise XstiltsInputError(f"input row {position}: no column {', '.join(missing)}; a {spec.name} model "
                                    f"reads the columns {', '.join(required + optional)} (and optionally lang)")
    placeholders = {TaskType.TOKEN_CLASSIFICATION: lambda row: {"tags": [labels[0]] * len(row["tokens"])},
                    TaskType.MULTIPLE_CHOICE: lambda row: {"label": 0},
                    TaskType.EXTRACTIVE_QA: lambda row: {"answers": {"text": [], "answer_start": []}}}
    gold = placeholders.get(spec.task_type, lambda row: {"label": labels[0]})
    examples = []
    for position, row in enumerate(rows):
        # A DataFrame cell of words or choices may hold an array; encoding expects a list.
        example = {column: list(row[column]) if column in LIST_COLUMNS else row[column] for column in required}
        if spec.task_type is TaskType.EXTRACTIVE_QA:
            example["id"] = str(row.get("id", position))
        examples.append({**example, **gold(example)})
    return examples


def predict_rows(spec: TaskSpec, model, tokenizer, use_language, rows: list[dict], default_lang: str,
                 max_length: int, batch_size: int) -> list:
    """The prediction of each row, in order, each row scored with its language's adapter (`lang` column, else
    `default_lang`; the languages in turn, as `evaluate` scores them), as `evaluate` predicts: labels, tag lists,
    choice indices or (question id, answer) pairs."""
    labels = model_labels(model)
    handler = handler_for(spec)
    examples = unlabelled_examples(spec, rows, labels)
    langs = [str(row.get(LANG_COLUMN) or default_lang) for row in rows]
    predictions = [None] * len(rows)
    for lang in dict.fromkeys(langs):
        positions = [position for position, row_lang in enumerate(langs) if row_lang == lang]
        use_language(lang)
        for position, prediction in zip(positions, predict_examples(
                handler, model, tokenizer, [examples[position] for position in positions], labels, max_length,
                batch_size)):
            predictions[position] = prediction
    return predictions

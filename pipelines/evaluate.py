"""`evaluate`: zero-shot evaluation in every language of a task, in one of two modes.

- Trained tasks: `--train-run-id`, a FINISHED `target` run whose `model/` (encoder and head) predicts. Its params
  (task, intermediate task, source language, model, method, seed) are copied so the analysis stage finds
  everything on the evaluate run; its other params (training settings) as `target/<param>`, and its English
  selection score `select/<task>/en/<metric>` as a metric, so that a Compare of evaluate runs relates them.
- Retrieval without task training (`--retrieval-task tatoeba|bucc2018|lareqa|mewslix`): the encoder is the `model/`
  of a FINISHED `intermediate` or `target` run (`--encoder-run-id`) or a base model (`--encoder-model`). Pooled hidden
  states of one layer, then cosine nearest neighbour (Tatoeba), ratio-margin mining with a threshold from the dev gold (BUCC), or ranking of
  the candidate pool (the dual-encoder tasks LAReQA and Mewsli-X, whose `target` runs are scored the same way).

Reads: the runs and models above, and the task's evaluation data in each language (docs/data.md).
Writes: metrics `eval/<task>/<lang>/<metric>` and `eval_examples/<task>/<lang>/n`; the same scores as
`<task>.<metric>/<lang>` with the task averages `<task>.<metric>/{avg,avg_no_en,avg_low_resource}` (over the
languages evaluated, without English, and those of configs/low_resource_languages.yaml; params
`<average>_langs/<task>` name them), one chart section per task and metric in the MLflow UI; params
`eval_split/<task>/<lang>`
(the split scored in that language: test, or dev where test labels are not available) and, for trained tasks,
`eval_split_reason/<task>/<lang>` (why; see `components.data.choose_evaluation_split`), `optimistic/<task>/<lang>`
where that language's score is optimistic (why: `components.data.optimistic_score_reason`, BUCC's in-sample
threshold); for tagging `tagging_long_sentences` (how sentences longer than `max_length` are read); for BUCC also
`eval_details/bucc2018/<lang>/{threshold,candidates,predicted}` (no registry metric, so kept out of `eval/`); artifacts
`predictions/<task>/<split>-<lang>[.<n>-of-<N>].<ext>` in the XTREME file format, named by the split and items they
hold, and `predictions/<task>/manifest.json` listing them (`components.predictions`; `analysis.submission` assembles
the complete test files into the XTREME submission layout), beside each file its MLflow table `<file>.table.json`
(trained tasks: id, input, gold, prediction, correct; retrieval: id, query, gold_id, gold, retrieved_id, retrieved,
correct, one row per scored query); dataset inputs `<task>-<split>-<lang>` (context testing)
and, for trained tasks, the target run's LoggedModel as a model input.
"""

from pipelines.options import command

main = command("evaluate", __doc__, "pipelines.evaluate:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

import tempfile
from pathlib import Path
from typing import Callable, Iterable

import click

from analysis.benchmark import low_resource_langs
from components import dual_encoder, tracking
from components.data import EvaluationSplit, evaluation_sets, item_ranges, optimistic_score_reason
from components.errors import XstiltsInputError
from components.evaluation import evaluate_language, task_averages
from components.models import MODELS, ModelSpec, load_model, load_tokenizer, resolve_model
from components.options import DEFAULT_MODEL
from components.predictions import MANIFEST, PredictionFile, manifest, prediction_file, prediction_table, table_name
from components.retrieval import RETRIEVAL_TASKS, RetrievalResult, check_embedding_options, check_files, embed, \
    hidden_state_index
from components.tasks import TASKS, TaskSpec, TaskType, get_task
from components.task_types import handler_for
from components.training import TrainConfig, check_precision
from components.methods import METHODS, Method
from components.adapter_runs import LANG_ADAPTER_PARAM, LangAdapterUse, check_lang_adapter_exclusions
from components.trained_models import CONFIG_PREFIX as MODEL_CONFIG_PREFIX, lang_adapter_choice, load_trained_model, \
    model_labels

COPIED_PARAMS = ("task", "model", "method", "seed", "intermediate_task", "intermediate_source_lang", "init_run_id",
                 "data_protocol", "max_length", "lang_adapter_run_id", "lang_reduction_factor", "task_reduction_factor")
ENCODER_PHASES = ("intermediate", "target")
TRAINING_SETTINGS_PREFIX = "target/"
SELECTION_SPLIT = "select"  # the split of the metric keys a target run logs its English selection scores under
DUAL_ENCODER_TASKS = tuple(name for name, spec in TASKS.items() if spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL)
RETRIEVAL_CHOICES = " | ".join((*RETRIEVAL_TASKS, *DUAL_ENCODER_TASKS))


def run(train_run_id: str, retrieval_task: str, encoder_run_id: str, encoder_model: str, retrieval_layer: str,
        retrieval_pooling: str, langs: str, batch_size: int, max_pairs: int, max_eval_examples: int,
        lang_adapter_runs: str, lang_adapter_fallback: str, eval_precision: str) -> None:
    retrieval_options = {"retrieval_task": retrieval_task, "encoder_run_id": encoder_run_id,
                         "encoder_model": encoder_model, "retrieval_layer": retrieval_layer,
                         "retrieval_pooling": retrieval_pooling, "max_pairs": max_pairs}
    trained_options = {"max_eval_examples": max_eval_examples, "lang_adapter_runs": lang_adapter_runs,
                       "lang_adapter_fallback": lang_adapter_fallback,
                       "eval_precision": "" if eval_precision == "fp32" else eval_precision}
    if train_run_id:
        _refuse_retrieval_options(retrieval_options)
        run_id = evaluate_trained(train_run_id, langs, batch_size, max_eval_examples, lang_adapter_runs,
                                  lang_adapter_fallback, eval_precision)
    elif any(trained_options.values()):
        given = ", ".join(name for name, value in trained_options.items() if value)
        raise XstiltsInputError(f"{given} evaluate a trained `target` run: pass its train_run_id")
    elif retrieval_task:
        run_id = evaluate_retrieval(retrieval_task, encoder_run_id, encoder_model, _layer(retrieval_layer),
                                    retrieval_pooling, langs, batch_size, max_pairs)
    else:
        raise XstiltsInputError(f"pass train_run_id=<target run> (trained tasks) or retrieval_task="
                                f"{RETRIEVAL_CHOICES} (retrieval without task training)")
    click.echo(f"evaluate run {run_id}")


def _refuse_retrieval_options(options: dict[str, object]) -> None:
    given = [name for name, value in options.items() if value]
    if given:
        raise XstiltsInputError(
            f"train_run_id evaluates the task of a trained `target` run; {', '.join(given)} belong to retrieval "
            f"without task training (retrieval_task {RETRIEVAL_CHOICES}); to evaluate a run's encoder on a retrieval "
            "task, pass it as encoder_run_id"
        )


def _layer(text: str) -> int | None:
    """The retrieval_layer option: "" (its default) means the model's retrieval layer."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise XstiltsInputError(f"retrieval_layer must be an integer index into hidden_states, got {text!r}") from None


def _languages(spec: TaskSpec, langs: str) -> list[str]:
    languages = [lang.strip() for lang in langs.split(",") if lang.strip()] or list(spec.langs)
    for lang in languages:
        spec.check_lang(lang)
    return languages


def _echo_metrics(task: str, lang: str, metrics: dict[str, float]) -> None:
    click.echo(f"{task} {lang}: " + ", ".join(f"{name}={value:.2f}" for name, value in metrics.items()))


def evaluate_trained(train_run_id: str, langs: str, batch_size: int, max_examples: int = 0,
                     lang_adapter_runs: str = "", lang_adapter_fallback: str = "", precision: str = "fp32") -> str:
    """Scores a `target` run's model in each language of its task; returns the evaluate run's id.

    A run of an adapter method is loaded as its base model with its task adapter and head; with language adapters,
    each language is scored on `Stack(<its adapter>, task)` (see `components.adapter_runs.lang_adapter_plan`).
    """
    check_precision(precision)
    upstream_run = tracking.finished_run(train_run_id, "target")
    upstream = upstream_run.data.params
    spec = get_task(upstream["task"])
    languages = _languages(spec, langs)
    if max_examples < 0:
        raise XstiltsInputError(f"max_eval_examples must be 0 (all) or a positive cap, got {max_examples}")
    handler = handler_for(spec)
    method = METHODS[upstream.get("method", "full")]
    plan = _lang_adapter_plan(method, upstream, languages, lang_adapter_runs, lang_adapter_fallback, max_examples)
    copied = {key: upstream[key] for key in COPIED_PARAMS if key in upstream}
    # The rest of the target run's settings (lr, epochs, data sizes, ...) under `target/`, so that a Compare of
    # evaluate runs shows what each scored model was trained with (not its MLflow model's loading defaults).
    training_settings = {f"{TRAINING_SETTINGS_PREFIX}{key}": value for key, value in upstream.items()
                         if key not in COPIED_PARAMS and not key.startswith(MODEL_CONFIG_PREFIX)}
    params = {**copied, **training_settings, "train_run_id": train_run_id, "langs": ",".join(languages),
              "max_eval_examples": max_examples, "eval_precision": precision,
              **handler.evaluation_params(int(upstream["max_length"]))}
    # Every language's data is read before the run starts, so that all languages without it are named at once.
    if spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL:
        score = _dual_encoder_scorer(dual_encoder.load_retrieval_data(spec, languages, max_examples or None))
    else:
        evaluated = {lang: found.first(max_examples)
                     for lang, found in evaluation_sets(spec, upstream["data_protocol"], languages).items()}
    with tracking.phase_run("evaluate", params, tags={"task": spec.name}) as run_id:
        # The English selection score the target run chose its checkpoint by, under the target run's own key.
        tracking.log_metrics({key: value for key, value in upstream_run.data.metrics.items()
                              if key.startswith(f"{SELECTION_SPLIT}/")}, step=0)
        model_id = tracking.trained_model_id(train_run_id)
        tracking.log_model_input(model_id)
        if method.adapters:
            tracking.log_params({tracking.language_param_key(LANG_ADAPTER_PARAM, spec.name, lang): use.described
                                 for lang, use in plan.items()})
        with tempfile.TemporaryDirectory(prefix="xstilts-evaluate-") as work_dir:
            model, tokenizer, use_language = load_trained_model(train_run_id, upstream, spec, plan, Path(work_dir))
        if spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL:
            # Embedded as in training: the last layer's mean, no prefix, the run's max_length.
            options = {"layer": hidden_state_index(model.encoder, -1), "pooling": dual_encoder.POOLING, "prefix": "",
                       "batch_size": batch_size, "max_length": int(upstream["max_length"])}
            tracking.log_params({key: options[key] for key in ("layer", "pooling", "prefix")})
            _log_retrieval_results(spec.name, score(model.encoder, tokenizer, options))
            return run_id
        labels = model_labels(model)
        _log_evaluation_splits(spec.name, {lang: found.choice for lang, found in evaluated.items()})
        select_holdout = int(upstream.get("select_holdout", 0))
        tracking.log_params({tracking.language_param_key(tracking.OPTIMISTIC, spec.name, lang): reason
                             for lang in languages
                             if (reason := optimistic_score_reason(spec, upstream["data_protocol"], lang,
                                                                   select_holdout))})
        written, scores = [], {}
        for lang, found in evaluated.items():
            use_language(lang)
            tracking.log_dataset(spec.name, found.choice.split, lang, item_ranges(found.indices), found.examples,
                                 "testing")
            result = evaluate_language(spec, model, tokenizer, found.examples, labels,
                                       int(upstream["max_length"]), batch_size, precision)
            tracking.log_evaluation(spec.name, lang, result.metrics, result.n_examples)
            scores[lang] = result.metrics
            written.append(prediction_file(lang, found.choice.split, handler.prediction_extension,
                                           result.prediction_file, found.indices, found.split_size,
                                           prediction_table(found.examples, result.predictions, found.indices)))
            _log_prediction_files(spec.name, written)
            _echo_metrics(spec.name, lang, result.metrics)
        tracking.log_task_averages(spec.name, task_averages(scores, low_resource_langs("")), model_id)
    return run_id


def _log_evaluation_splits(task: str, choices: dict[str, EvaluationSplit]) -> None:
    """Params `eval_split/<task>/<lang>` and `eval_split_reason/<task>/<lang>`."""
    tracking.log_params({tracking.language_param_key(name, task, lang): value for lang, choice in choices.items()
                         for name, value in ((tracking.EVAL_SPLIT, choice.split),
                                             (tracking.EVAL_SPLIT_REASON, choice.reason))})


def _log_prediction_files(task: str, files: list[PredictionFile]) -> None:
    """The newest of `files` under `predictions/<task>/` with its table beside it, and the manifest of all of them
    (rewritten each time, so that it always lists the files the run holds)."""
    tracking.log_text(files[-1].content, f"{tracking.PREDICTIONS_ARTIFACT}/{task}/{files[-1].name}")
    if files[-1].table is not None:
        tracking.log_table(files[-1].table, f"{tracking.PREDICTIONS_ARTIFACT}/{task}/{table_name(files[-1])}")
    tracking.log_text(manifest(files), f"{tracking.PREDICTIONS_ARTIFACT}/{task}/{MANIFEST}")


def _lang_adapter_plan(method: Method, run_params: dict, languages: list[str], run_ids: str, fallback: str,
                       max_examples: int) -> dict[str, LangAdapterUse]:
    """The language adapter of each language for a `method` run (none unless it stacks on language adapters), each
    checked to have left out what the evaluation scores in its language."""
    plan = lang_adapter_choice(method, run_params, languages, run_ids, fallback)
    if method.lang_adapters:
        check_lang_adapter_exclusions(plan, run_params["task"], run_params["data_protocol"], max_examples)
    return plan


def evaluate_retrieval(task: str, encoder_run_id: str, model_name: str, layer: int | None, pooling: str, langs: str,
                       batch_size: int, max_pairs: int) -> str:
    """Scores an encoder, without task training, on a retrieval task in each language; returns the run's id.

    Args:
        encoder_run_id: a FINISHED `intermediate` or `target` run whose `model/` encodes; else `model_name`.
        model_name: registered name or local folder; "" = the default model.
        layer, pooling: hidden state and pooling; None / "" = the model's registry defaults.
        max_pairs: debug cap per language; 0 = all.
    """
    spec = get_task(task)
    if spec.name not in RETRIEVAL_TASKS and spec.name not in DUAL_ENCODER_TASKS:
        raise XstiltsInputError(f"task {spec.name!r} is evaluated from a trained model: pass train_run_id of its "
                                f"`target` run (retrieval_task is for retrieval without task training: "
                                f"{RETRIEVAL_CHOICES})")
    if encoder_run_id and model_name:
        raise XstiltsInputError("pass encoder_run_id or encoder_model, not both: the run's `model/` is the encoder")
    if max_pairs < 0:
        raise XstiltsInputError(f"max_pairs must be 0 (all) or a positive cap, got {max_pairs}")
    languages = _languages(spec, langs)
    score = _retrieval_scorer(spec, languages, max_pairs or None)
    model, tokenizer, params, base = _load_encoder(encoder_run_id, model_name)
    options = _embedding_options(model, base, layer, pooling, batch_size)
    if spec.name in DUAL_ENCODER_TASKS:
        # The length a default `target` run trains and is scored at, so that untrained and trained encoders compare
        # (the model's own maximum, 512, would make the LAReQA pool of 13,014 paragraphs slow to embed on a CPU).
        options["max_length"] = TrainConfig().max_length
    params.update(task=spec.name, langs=",".join(languages), max_pairs=max_pairs,
                  **{key: options[key] for key in ("layer", "pooling", "prefix", "max_length") if key in options})
    with tracking.phase_run("evaluate", params, tags={"task": spec.name}) as run_id:
        _log_retrieval_results(spec.name, score(model, tokenizer, options))
    return run_id


LanguageScorer = Callable[[object, object, dict], Iterable[tuple[str, RetrievalResult]]]


def _retrieval_scorer(spec: TaskSpec, languages: list[str], limit: int | None) -> LanguageScorer:
    """(model, tokenizer, embedding options) -> (language, result) pairs; reads the dual-encoder data, or checks the
    Tatoeba/BUCC files, first, so that missing or malformed data fails before any run starts."""
    if spec.name in DUAL_ENCODER_TASKS:
        return _dual_encoder_scorer(dual_encoder.load_retrieval_data(spec, languages, limit))
    check_files(spec.name, languages)
    evaluate_one = RETRIEVAL_TASKS[spec.name].evaluate
    return lambda model, tokenizer, options: ((lang, evaluate_one(model, tokenizer, lang, limit=limit, **options))
                                              for lang in languages)


def _dual_encoder_scorer(data: dual_encoder.RetrievalData) -> LanguageScorer:
    return lambda model, tokenizer, options: dual_encoder.score(
        data, lambda texts: embed(model, tokenizer, texts, **options)).items()


def _load_encoder(encoder_run_id: str, model_name: str):
    """The encoder and tokenizer, the params saying where they come from, and the base model's registry spec."""
    upstream = _encoder_run(encoder_run_id) if encoder_run_id else None
    with tempfile.TemporaryDirectory(prefix="xstilts-evaluate-") as work_dir:
        resolved = resolve_model(str(_download_encoder(upstream, Path(work_dir))) if upstream
                                 else model_name or DEFAULT_MODEL)
        model, tokenizer = load_model(resolved), load_tokenizer(resolved)
    params = _encoder_params(upstream, resolved.name)
    # Retrieval defaults belong to the base model: a downloaded `model/` folder resolves to a spec without them.
    return model, tokenizer, params, MODELS.get(params["model"], resolved.spec)


def _embedding_options(model, base: ModelSpec, layer: int | None, pooling: str, batch_size: int) -> dict:
    """`embed` options: the requested layer and pooling or the base model's, its prefix; the layer as a non-negative
    index so that the logged value compares across models."""
    layer = base.retrieval_layer if layer is None else layer
    pooling = pooling or base.pooling
    check_embedding_options(model, layer, pooling, batch_size)
    return {"layer": hidden_state_index(model, layer), "pooling": pooling, "prefix": base.retrieval_prefix,
            "batch_size": batch_size}


def _encoder_run(run_id: str):
    """The FINISHED `intermediate` or `target` run `run_id`."""
    try:
        return tracking.finished_run(run_id, *ENCODER_PHASES)
    except XstiltsInputError as error:
        raise XstiltsInputError(f"encoder_run_id {run_id}: expected a FINISHED `intermediate` or `target` run; "
                                f"{error}") from None


def _download_encoder(upstream, work_dir: Path) -> Path:
    phase = upstream.data.tags[f"{tracking.TAG_PREFIX}phase"]
    return tracking.download_model(upstream.info.run_id, phase, work_dir)


def _encoder_params(upstream, model_name: str) -> dict[str, str]:
    """Where the encoder comes from, in the params the analysis stage groups by."""
    if upstream is None:
        # The untrained encoder is the retrieval baseline of every fully fine-tuned study arm (XTREME evaluates Tatoeba
        # and BUCC without task training), hence method "full"; nothing random happens, hence no seed.
        return {"model": model_name, "method": "full", "seed": "none", "encoder_run_id": "", "encoder_task": "none",
                "intermediate_task": "none"}
    params = upstream.data.params
    if upstream.data.tags[f"{tracking.TAG_PREFIX}phase"] == "intermediate":
        intermediate = {"intermediate_task": params["task"], "intermediate_source_lang": params.get("source_lang", "")}
    else:
        intermediate = {"intermediate_task": params.get("intermediate_task", "none"),
                        "intermediate_source_lang": params.get("intermediate_source_lang", "")}
    return {"model": params["model"], "method": params.get("method", "full"), "seed": params.get("seed", "none"),
            "encoder_run_id": upstream.info.run_id, "encoder_task": params["task"], **intermediate}


def _log_retrieval_results(task: str, results: Iterable[tuple[str, RetrievalResult]]) -> None:
    written, scores = [], {}
    for lang, result in results:
        tracking.log_evaluation(task, lang, result.metrics, result.n_examples)
        scores[lang] = result.metrics
        tracking.log_language_metrics("eval_details", task, lang, result.details)
        tracking.log_params({tracking.language_param_key(name, task, lang): value
                             for name, value in result.notes.items()})
        for file in result.predictions:
            written.append(file)
            _log_prediction_files(task, written)
        _echo_metrics(task, lang, result.metrics)
    tracking.log_task_averages(task, task_averages(scores, low_resource_langs("")))

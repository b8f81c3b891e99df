"""Every run option, defined once: its `-P` name, type, default, help and valid values, per entry point.

The click options of `python -m pipelines.<entry>` (`pipelines.options`), the MLproject's parameters
(`scripts/generate_mlproject.py` writes them) and the phase params a study config may set (`components.grid`) are all
derived from `ENTRY_POINTS`, and `TrainConfig`/`LangAdapterConfig` take their defaults from here. Standard library
only: `--help` and argument errors must answer before torch, transformers or mlflow are imported.
"""

from dataclasses import dataclass, replace

DEFAULT_MODEL = "multilingual-e5-small"
PRECISIONS = ("fp32", "bf16", "fp16")
# Closed sets whose members live in modules too heavy to import here; tests/test_options.py checks each against them.
METHOD_NAMES = ("full", "madx", "task_adapter", "adapter_stilts", "full_then_madx")  # components.methods.METHODS
PROTOCOL_NAMES = ("standard", "dev-split", "target-dev", "auto")  # components.data.PROTOCOLS, and auto
RETRIEVAL_TASK_NAMES = ("tatoeba", "bucc2018", "lareqa", "mewslix")  # retrieval and dual-encoder tasks
POOLINGS = ("mean", "cls")
LANG_ADAPTER_FALLBACKS = ("source", "none")
PRUNER_NAMES = ("median", "hyperband", "none")  # tuning.study.PRUNERS
DISTANCE_KINDS = ("syntactic", "featural", "genetic", "geographic", "inventory", "phonological", "morphological")

# MLproject parameter types; a bool is a string there ("True"/"False", as `str` logs it).
MLPROJECT_TYPES = {str: "string", int: "int", float: "float", bool: "string"}


@dataclass(frozen=True)
class Option:
    """One run option.

    Attributes:
        name: the `-P` name, the Python keyword and (dashed) the `--flag`.
        default: None = required.
        choices: the valid values of a closed set ("" among them where empty means "not given").
        lists_tasks: the help lists the task registry's names (read when the help is shown).
        minimum: the least valid value of a number.
    """

    name: str
    type: type
    default: object
    help: str
    choices: tuple[str, ...] = ()
    lists_tasks: bool = False
    minimum: int | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def logged_default(self) -> str:
        """The default as a run logs it (`str`), which is also the MLproject's default: both starts log the same."""
        return str(self.default)


def _with(options: tuple[Option, ...], **defaults) -> tuple[Option, ...]:
    """`options` with other defaults for some of them (by name)."""
    unknown = set(defaults) - {option.name for option in options}
    assert not unknown, f"no options named {sorted(unknown)}"
    return tuple(replace(option, default=defaults[option.name]) if option.name in defaults else option
                 for option in options)


MODEL = Option("model", str, DEFAULT_MODEL, "Registered model name or a local Hugging Face folder.")
# 1e-4 suits the default offline encoder with frozen word embeddings (XNLI dev-split, English select accuracy: 72.2 at
# 1e-4 vs 61.1 at 3e-5); the reference study fine-tuned XLM-R Large at 1e-5.
LR = Option("lr", float, 1e-4, "Peak learning rate.")
BATCH_SIZE = Option("batch_size", int, 32, "Examples per batch.")
MAX_LENGTH = Option("max_length", int, 128, "Tokens per example; longer inputs are cut.")
SEED = Option("seed", int, 42, "Seed of the head's initialisation, the data order and dropout.")
PRECISION = Option("precision", str, "fp32", "Autocast precision of training (bf16/fp16 on GPUs; fp16 needs CUDA).",
                   PRECISIONS)
INIT_RUN_ID = Option("init_run_id", str, "", "Run id of an `intermediate` run whose encoder is the starting point; "
                                             "empty = start from the base model.")

TRAINING = (
    MODEL,
    Option("protocol", str, "auto", "Data protocol (docs/data.md); auto = the task's usual one.",
           PROTOCOL_NAMES),
    LR,
    Option("epochs", float, 3.0, "Training epochs (fractions allowed)."),
    BATCH_SIZE,
    MAX_LENGTH,
    SEED,
    Option("max_train_examples", int, 0, "Cap on training examples (the first N); 0 = all."),
    # CPU-sized runs cap it: PAN-X's English dev alone has 10,000 sentences, and every selection evaluation scores it.
    Option("max_select_examples", int, 0, "Cap on English selection examples (the first N); 0 = all."),
    Option("early_stopping_patience", int, 0, "Selection evaluations without improvement before training stops; "
                                               "0 = never stop early."),
    Option("warmup_ratio", float, 0.1, "Share of the training steps over which the learning rate warms up."),
    Option("evals_per_epoch", int, 1, "English-dev selection evaluations per epoch (checkpoints, early stopping, "
                                      "tuning's pruner)."),
    Option("freeze_word_embeddings", bool, True, "Keep the word embeddings frozen (most of a small multilingual "
                                                 "encoder's parameters; halves the CPU step time)."),
    PRECISION,
    Option("fused_adamw", bool, False, "torch's fused AdamW kernel (faster on GPUs)."),
    Option("accumulation_steps", int, 1, "Gradient accumulation: optimizer steps see batch_size x "
                                         "accumulation_steps examples."),
    Option("compile_model", bool, False, "torch.compile the model before training."),
    Option("trim_vocabulary", bool, False, "Full fine-tuning: train only the word-embedding rows of the tokens the "
                                           "training and selection data use, written back into the full matrix at "
                                           "the end (docs/speed.md)."),
    Option("train_source_override", str, "", "Train on this task's English train split instead of the registry's "
                                             "sources (e.g. tydiqa for xquad/mlqa: no SQuAD offline); empty = the "
                                             "registry's."),
    Option("select_holdout", int, 0, "Select on the last N English training items instead of the dev split (tasks "
                                     "without an English dev split offline); 0 = dev split."),
)
METHOD = (
    Option("method", str, "full", "Training method (docs/methods.md); intermediate takes full or madx.",
           METHOD_NAMES),
    Option("lang_adapter_run_id", str, "", "Adapter methods with language adapters: a FINISHED lang_adapter run in "
                                           "the training language."),
    Option("task_reduction_factor", float, 16.0, "Adapter methods: hidden size / task-adapter bottleneck width."),
)
TARGET = (
    Option("task", str, "xnli", "Target task (registry name).", lists_tasks=True),
    INIT_RUN_ID,
    *TRAINING,
    *METHOD,
)
INTERMEDIATE = (
    Option("task", str, "anli", "Intermediate task (registry name), or several separated by commas (multi-task "
                                "training).", lists_tasks=True),
    Option("source_lang", str, "en", "Language of the intermediate tasks' data."),
    Option("task_size_cap", int, 0, "Multi-task: a task's sampling weight is min(its training-set size, N) "
                                    "(examples-proportional mixing with a cap); 0 = no cap."),
    *_with(TRAINING, epochs=1.0),
    *METHOD,
)
TUNE = (
    *_with(TARGET, evals_per_epoch=2),
    Option("space", str, "", "Search space: a YAML file, or YAML text such as "
                             "'{lr: {low: 1.0e-5, high: 1.0e-3, log: true}}'; empty = configs/tune/full.yaml, or "
                             "configs/tune/adapters.yaml for adapter methods."),
    Option("n_trials", int, 20, "The study's trial budget, all workers."),
    Option("time_budget_s", int, 0, "This worker starts no trial after this many seconds; 0 = no limit. Unrun "
                                    "trials stay queued."),
    Option("study_name", str, "", "Workers with the same name and storage share the study; empty = "
                                  "<task>.<method>.<model>.<intermediate>."),
    Option("storage", str, "", "Empty = the journal file outputs/optuna/journal.log (several processes on one "
                               "machine); a journal file path; or a database URL for many machines "
                               "(postgresql+psycopg://user@host/db; keep its password in PGPASSWORD or ~/.pgpass: "
                               "values are logged). sqlite:/// serves one worker only."),
    Option("workers", int, 1, "Worker processes this command runs on this machine (itself included)."),
    Option("sampler_seed", int, 0, "Seed of the TPE sampler."),
    Option("pruner", str, "median", "Prunes on the English-dev evaluations (see evals_per_epoch).", PRUNER_NAMES),
    Option("heartbeat_s", int, 60, "Database storages: a running trial's heartbeat interval; a trial without a beat "
                                   "for three intervals is failed and retried."),
    Option("best_params_dir", str, "tuning/best_params", "Where the cell's YAML of tuned values is written (the "
                                                         "grid reads it)."),
)
LANG_ADAPTER = (
    Option("lang", str, None, "Language code (ISO 639-1 where one exists: sw, yo, qu, ht, ...)."),
    MODEL,
    Option("init_run_id", str, "", "A FINISHED full intermediate run whose encoder is the base model (method "
                                   "full_then_madx)."),
    Option("lang_reduction_factor", float, 2.0, "Hidden size / language-adapter bottleneck width; must divide the "
                                                "hidden size."),
    Option("max_steps", int, 1000, "Training steps."),
    LR,
    BATCH_SIZE,
    replace(MAX_LENGTH, help="Texts longer than this many tokens are cut."),
    SEED,
    PRECISION,
    Option("text_source", str, "bundle", "bundle, or hf:<dataset>:<config with {lang}>[:<field>] online, e.g. "
                                         "hf:wikimedia/wikipedia:20231101.{lang}:text."),
    Option("max_texts", int, 0, "Cap on training texts (a seeded sample of the bundle's; the first N lines of a Hub "
                                "corpus, which needs one); 0 = all."),
    Option("exclude_eval_of", str, "all", "Tasks whose evaluation texts in the language are left out: all, none, or "
                                          "names separated by commas."),
    Option("protocol", str, "auto", "The protocols the studied tasks are evaluated under, separated by commas "
                                    f"({', '.join(PROTOCOL_NAMES)}; each decides which texts they score; auto is "
                                    "resolved per task)."),
)
# The retrieval parameters are not named `task`, `model`, `layer` or `pooling`: `mlflow run` logs every parameter,
# defaults included, before the code logs those with the values actually used.
EVALUATE = (
    Option("train_run_id", str, "", "Trained tasks: run id of a FINISHED `target` run."),
    # Not a click choice: a trained task named here gets the error that says how to evaluate it.
    Option("retrieval_task", str, "", f"Retrieval without task training: {' | '.join(RETRIEVAL_TASK_NAMES)}."),
    Option("encoder_run_id", str, "", "Retrieval: a FINISHED `intermediate` or `target` run whose `model/` encodes."),
    Option("encoder_model", str, "", f"Retrieval without a run id: registered name or local folder; empty = "
                                     f"{DEFAULT_MODEL}."),
    Option("retrieval_layer", str, "", "Retrieval: index into hidden_states (0 = embeddings, -1 = last); empty = "
                                       "the model's."),
    Option("retrieval_pooling", str, "", "Retrieval: pooling of the hidden states; empty = the model's.",
           ("", *POOLINGS)),
    Option("langs", str, "", "Comma-separated languages; empty = every language of the task."),
    replace(BATCH_SIZE, default=64),
    Option("max_pairs", int, 0, "Retrieval debug cap per language: Tatoeba pairs, BUCC gold pairs (with as many "
                                "other sentences per side), or LAReQA/Mewsli-X queries; 0 = all."),
    Option("max_eval_examples", int, 0, "Trained tasks, debug cap per language: score the first N evaluation "
                                        "examples; 0 = all."),
    Option("lang_adapter_runs", str, "", "MAD-X runs: FINISHED lang_adapter runs (comma-separated) whose adapters "
                                         "evaluate their languages."),
    Option("lang_adapter_fallback", str, "", "MAD-X runs, for a language without an adapter: the source-language "
                                             "adapter, or the task adapter alone (none); empty = such a language is "
                                             "an error.", ("", *LANG_ADAPTER_FALLBACKS)),
    Option("eval_precision", str, "fp32", "Trained tasks: autocast precision of the forward passes (bf16: several "
                                          "times faster on CPUs with native bf16 and on GPUs; see BENCHMARKS.md).",
           PRECISIONS),
)
RUN_SELECTION = (
    Option("experiment", str, "", "Experiment name or id; empty = every experiment."),
    Option("parent_run_id", str, "", "Only the children of this run (a study's `main` run)."),
    Option("tags", str, "", "Comma-separated key=value tags every selected run carries."),
)
ANALYSIS = (
    *RUN_SELECTION,
    Option("output_dir", str, "outputs/analysis", "Folder for the report; emptied first if an earlier analysis "
                                                  "wrote it."),
    Option("low_resource_langs", str, "", "Comma-separated languages; empty = configs/low_resource_languages.yaml."),
    Option("langs", str, "", "Comma-separated languages: average each task over its languages among these, for a "
                             "study that evaluated a subset (the demo); empty = every language of the benchmark."),
    Option("distance", str, "syntactic", "URIEL+ distance kind.", DISTANCE_KINDS),
    Option("n_bootstrap", int, 10_000, "Bootstrap resamples of the seeds for each 95% interval.", minimum=100),
    Option("bootstrap_seed", int, 0, "Seed of the bootstrap resampling."),
    Option("include_optimistic", bool, False, "Let optimistic scores (BUCC's in-sample threshold, an English score "
                                              "on the selection set: the runs' optimistic/<task>/<lang> params) enter "
                                              "the XTREME-R and XTREME scores; they are labelled either way."),
    Option("register_best", bool, False, "Register in the Model Registry, per configuration and target task, the "
                                         "trained model of the seed with the best English selection score (never "
                                         "a target-language score), as xstilts-<task>-<configuration>."),
)
SUBMISSION = (
    *RUN_SELECTION,
    Option("run_params", str, "", "Comma-separated key=value params every run carries, e.g. method=full,"
                                  "intermediate_task=anli,seed=42: a task's files must come from one configuration."),
    Option("tasks", str, "", "Comma-separated tasks; empty = every task the selected runs evaluated."),
    Option("output_dir", str, "outputs/submission", "Folder for the submission; emptied first if an earlier "
                                                    "submission wrote it."),
)
MAIN = (
    Option("config", str, "configs/demo.yaml", "Study config (YAML; see configs/ and docs/grids.md)."),
    Option("workers", int, 1, "Steps run at once when they do not depend on each other (needs a tracking server if "
                              "> 1)."),
    Option("force", str, "", "Rerun these entry points' steps even when cached: comma-separated lang_adapter, "
                             "intermediate, target, evaluate, or all."),
    Option("executor", str, "local", "Where steps run: local (threads on this machine, --workers at a time, one GPU "
                                     "each where it has several) or ray (a Ray task per step; docs/scale-out.md).",
           ("local", "ray")),
    Option("ray_address", str, "", "executor=ray: the cluster; empty = start a local Ray instance (whatever "
                                   "RAY_ADDRESS says), auto = the cluster this machine belongs to, host:port or "
                                   "ray://host:10001."),
    Option("max_retries", int, 1, "Times a step whose process or node died is run again.", minimum=0),
    Option("plan", bool, False, "Print every step (cached, or to run with its estimated CPU-/GPU-hours from "
                                "finished runs in the store) and stop: nothing trains (docs/scale-out.md)."),
)

# Entry point -> its options, in MLproject order; the MLproject lists the entry points in this order too.
ENTRY_POINTS: dict[str, tuple[Option, ...]] = {
    "main": MAIN, "intermediate": INTERMEDIATE, "target": TARGET, "tune": TUNE, "lang_adapter": LANG_ADAPTER,
    "evaluate": EVALUATE, "analysis": ANALYSIS, "submission": SUBMISSION,
}
# Entry point -> the module `python -m` runs.
ENTRY_MODULES = {entry: f"pipelines.{entry}" for entry in ENTRY_POINTS} | {"analysis": "analysis.main",
                                                                          "submission": "analysis.submission"}


def option_defaults(options: tuple[Option, ...]) -> dict[str, object]:
    """The typed default of each of `options`, by name."""
    return {option.name: option.default for option in options}


def logged_defaults(entry: str) -> dict[str, str]:
    """The default of each option of `entry` as `mlflow run` logs it ("" for a required one)."""
    return {option.name: "" if option.default is None else option.logged_default for option in ENTRY_POINTS[entry]}


def parameter_names(entry: str) -> set[str]:
    """The `-P` names of `entry`, which a study config's phase params may also set."""
    return {option.name for option in ENTRY_POINTS[entry]}

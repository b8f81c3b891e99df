"""What a run is, in words the MLflow UI shows: its name, its comparison tags and its one-sentence description.

Pure functions of a run's phase (entry point) and params; `components.tracking` looks up what they need from other
runs (an upstream run's task, the study of a parent run) and sets the results on the run. The same function names
a grid step when `main` creates its run and a run started by hand (`mlflow run -e target ...`,
`python -m pipelines.evaluate ...`), so both read alike:

    intermediate · anli(en) · full · s42
    target · xnli · full · from anli(en) · s42        target · xnli · full · s42   (no intermediate task)
    eval · xnli · full · from anli(en) · s42          eval · panx · madx · s42
    eval · tatoeba · anli encoder · from anli(en) · s42   eval · tatoeba · xlm-roberta-base · untrained
    lang_adapter · sw · s42      tune · <study>      main · demo      analysis · xstilts-demo

A tuning trial's `target` run ends with `· trial <n>`.

Tags (all `xlt.`-prefixed): `configuration` as the analysis names a configuration (`analysis.aggregate.config_label`:
`method · model · intermediate(source)`), `method`, `intermediate_task`, `source_lang` (the language the intermediate
task was trained in; absent without one), `target_task`, `seed`, `study` (the config a `main` run drives, e.g.
`demo`; a step carries its study's), `upstream_runs` (comma-separated run ids this run reads).
"""

from dataclasses import dataclass
from pathlib import PurePath
from typing import Mapping

from components.tasks import NO_INTERMEDIATE

SEPARATOR = " · "
NO_SEED = "none"
# The run-name prefix of each phase where it differs from the entry point's name.
NAME_PREFIXES = {"evaluate": "eval"}
# The params that hold a phase's own upstream run ids, and what each upstream run is, for the description's links
# (an evaluate run also carries its target run's `init_run_id` and `lang_adapter_run_id`, the target run's upstream).
UPSTREAM_ROLES = {"init_run_id": "intermediate run", "train_run_id": "target run", "encoder_run_id": "encoder run",
                  "lang_adapter_run_id": "language adapter run", "lang_adapter_runs": "language adapter run"}
UPSTREAM_PARAMS = {"intermediate": ("lang_adapter_run_id",), "target": ("init_run_id", "lang_adapter_run_id"),
                   "evaluate": ("train_run_id", "encoder_run_id", "lang_adapter_runs"),
                   "lang_adapter": ("init_run_id",), "tune": ("init_run_id",)}
TRAINED_PHASES = ("intermediate", "target", "evaluate")


@dataclass(frozen=True)
class Upstream:
    """An upstream run as the description links it: what it is, and where the UI shows it."""

    role: str
    run_id: str
    experiment_id: str
    name: str

    def link(self) -> str:
        """A Markdown link relative to the UI's page (the UI routes `#/experiments/<id>/runs/<run id>`)."""
        return f"[{self.name or self.run_id}](#/experiments/{self.experiment_id}/runs/{self.run_id})"


@dataclass(frozen=True)
class RunIdentity:
    name: str
    tags: dict[str, str]  # without the `xlt.` prefix
    description: str


def name_prefix(phase: str) -> str:
    return NAME_PREFIXES.get(phase, phase)


def upstream_run_ids(phase: str, params: Mapping[str, str]) -> list[tuple[str, str]]:
    """(role, run id) of every run a `phase` run reads, as its params name them, each id once."""
    found, seen = [], set()
    for key in UPSTREAM_PARAMS.get(phase, ()):
        role = UPSTREAM_ROLES[key]
        for run_id in str(params.get(key, "") or "").split(","):
            run_id = run_id.strip()
            if run_id and run_id not in seen:
                seen.add(run_id)
                found.append((role, run_id))
    return found


def intermediate_label(task: str, source_lang: str) -> str:
    """`anli(en)`, `anli+mnli(en)` for a multi-task run, or `none`, as `analysis.aggregate.intermediate_label`."""
    if not task or task == NO_INTERMEDIATE:
        return NO_INTERMEDIATE
    tasks = "+".join(name.strip() for name in task.split(","))
    return f"{tasks}({source_lang})" if source_lang else tasks


def configuration_label(method: str, model: str, intermediate: str) -> str:
    """`method · model · intermediate(source)`: what `analysis.aggregate.config_label` calls a configuration."""
    return SEPARATOR.join((method, model, intermediate))


def model_label(model: str) -> str:
    """A model as a name shows it: a registry name as it is, a local folder by its last component."""
    return PurePath(model).name if "/" in model else model


def _seed_part(seed: str) -> list[str]:
    return [f"s{seed}"] if seed and seed != NO_SEED else []


def _from_part(intermediate: str) -> list[str]:
    return [f"from {intermediate}"] if intermediate != NO_INTERMEDIATE else []


def _own_intermediate(phase: str, params: Mapping[str, str]) -> str:
    """The intermediate label of the configuration a run belongs to: an intermediate run's own task, else the one
    its encoder was trained on."""
    if phase == "intermediate":
        return intermediate_label(params.get("task", ""), params.get("source_lang", ""))
    return intermediate_label(params.get("intermediate_task", ""), params.get("intermediate_source_lang", ""))


def run_name(phase: str, params: Mapping[str, str], trial: str = "", study: str = "") -> str:
    method, seed = params.get("method", "full"), str(params.get("seed", ""))
    intermediate = _own_intermediate(phase, params)
    task = params.get("task", "")
    if phase == "intermediate":
        parts = [intermediate, method, *_seed_part(seed)]
    elif phase == "target":
        parts = [task, method, *_from_part(intermediate), *_seed_part(seed)]
    elif phase == "evaluate" and params.get("train_run_id"):
        parts = [task, method, *_from_part(intermediate), *_seed_part(seed)]
    elif phase == "evaluate" and params.get("encoder_run_id"):
        parts = [task, f"{params.get('encoder_task', '')} encoder", *_from_part(intermediate), *_seed_part(seed)]
    elif phase == "evaluate":
        parts = [task, model_label(params.get("model", "")), "untrained"]
    elif phase == "lang_adapter":
        parts = [params.get("lang", ""), *_seed_part(seed)]
    elif phase == "tune":
        parts = [params.get("study", "")]
    elif phase == "main":
        parts = [study]
    elif phase == "analysis":
        parts = [params.get("experiment") or (f"under {params['parent_run_id']}" if params.get("parent_run_id")
                                              else "all experiments")]
    else:
        parts = []
    if trial:
        parts.append(f"trial {trial}")
    return SEPARATOR.join([name_prefix(phase), *(part for part in parts if part)])


def study_of_config(config: str) -> str:
    """A study's name: its config file's stem (`configs/demo.yaml` -> `demo`)."""
    return PurePath(config).stem if config else ""


def comparison_tags(phase: str, params: Mapping[str, str], study: str) -> dict[str, str]:
    """The tags a runs table groups and filters by (see the module docstring); empty values are left out."""
    tags = {"study": study, "upstream_runs": ",".join(run_id for _, run_id in upstream_run_ids(phase, params))}
    if phase in TRAINED_PHASES and "task" in params:
        intermediate = _own_intermediate(phase, params)
        source_lang = (params.get("source_lang", "") if phase == "intermediate"
                       else params.get("intermediate_source_lang", ""))
        tags.update(configuration=configuration_label(params.get("method", "full"), params.get("model", ""),
                                                      intermediate),
                    method=params.get("method", "full"),
                    intermediate_task=params["task"] if phase == "intermediate" else
                    params.get("intermediate_task", "") or NO_INTERMEDIATE,
                    source_lang=source_lang if intermediate != NO_INTERMEDIATE else "",
                    seed=str(params.get("seed", "")))
        if phase != "intermediate":
            tags["target_task"] = params["task"]
    elif phase == "lang_adapter":
        tags["seed"] = str(params.get("seed", ""))
    return {key: value for key, value in tags.items() if value}


def description(phase: str, params: Mapping[str, str], study: str, upstream: list[Upstream]) -> str:
    """One sentence on what the run is, then a Markdown link to each upstream run."""
    sentence = _sentence(phase, params, study)
    links = [f"- {run.role}: {run.link()}" for run in upstream]
    return sentence + ("\n\nUpstream runs:\n" + "\n".join(links) if links else "")


def _sentence(phase: str, params: Mapping[str, str], study: str) -> str:
    method, seed, task = params.get("method", "full"), str(params.get("seed", "")), params.get("task", "")
    setting = f"method {method}, " + (f"after {_own_intermediate(phase, params)}, "
                                     if _own_intermediate(phase, params) != NO_INTERMEDIATE else
                                     "no intermediate task, ") + f"seed {seed}"
    if phase == "intermediate":
        return (f"Intermediate-task training on {task} in {params.get('source_lang', '')} (method {method}, seed "
                f"{seed}): the encoder target runs start from.")
    if phase == "target":
        return (f"Target-task training on English {task} ({setting}), checkpoints selected on English data only.")
    if phase == "evaluate" and params.get("train_run_id"):
        return f"Zero-shot evaluation of {task} in {params.get('langs', '')} of the target run below ({setting})."
    if phase == "evaluate":
        return f"Retrieval evaluation of {task} in {params.get('langs', '')} without task training ({setting})."
    if phase == "lang_adapter":
        return f"MAD-X language adapter for {params.get('lang', '')}, trained by masked language modelling."
    if phase == "tune":
        return f"Optuna study {params.get('study', '')}: every trial is a child `target` run."
    if phase == "main":
        return (f"Study {study} ({params.get('config', '')}): every step of its grid is a child run, and so is the "
                "analysis run.")
    if phase == "analysis":
        return "The study's analysis: per-configuration averages and gains over the no-intermediate baseline."
    return f"A {phase} run."


def identity(phase: str, params: Mapping[str, str], study: str = "", trial: str = "",
             upstream: list[Upstream] = ()) -> RunIdentity:
    study = study or (study_of_config(params.get("config", "")) if phase == "main" else "")
    return RunIdentity(run_name(phase, params, trial, study), comparison_tags(phase, params, study),
                       description(phase, params, study, list(upstream)))

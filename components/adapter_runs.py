"""The training method of a phase run (`method`), and for adapter methods their inputs, hand-off and evaluation
planning: the run-level side of `components.methods` (names and rules) and `components.adapters` (the models).

Adapter runs read a FINISHED `lang_adapter` run's `adapters/lang_<lang>/` (the training language's adapter) and, for
adapter_stilts, the intermediate run's `adapters/task_<task>/`; they write `adapters/task_<task>/` and
`heads/task_<task>/`, never a copy of the base model. `evaluate` loads them on the base model and swaps in each target
language's adapter (`lang_adapter_plan`: the language's own lang_adapter run, else an explicit fallback), once each
language's own adapter is known to have left out every text the evaluation scores there
(`check_lang_adapter_exclusions`).
"""

from dataclasses import dataclass
from pathlib import Path

from components import tracking
from components.adapters import (DEFAULT_TASK_REDUCTION_FACTOR, LANG, TaskAdapterTraining, lang_adapter_name,
                                 load_task_adapter_model, task_adapter_name)
from components.corpus import check_exclusion_covers, check_exclusion_recorded
from components.errors import XstiltsInputError
from components.options import LANG_ADAPTER_FALLBACKS
from components.methods import METHODS, Method, check_upstream, get_method, unsupported_reason
from components.models import load_tokenizer, resolve_model
from components.tasks import get_task
from components.training import load_task_model

LANG_ADAPTER_PHASE = "lang_adapter"


@dataclass(frozen=True)
class MethodChoice:
    """The method options of one training run (`method`, `lang_adapter_run_id`, `task_reduction_factor`)."""

    method: Method
    lang_adapter_run_id: str = ""
    task_reduction_factor: float = DEFAULT_TASK_REDUCTION_FACTOR

    @classmethod
    def from_options(cls, phase: str, method_name: str, lang_adapter_run_id: str,
                     task_reduction_factor: float) -> "MethodChoice":
        method = get_method(method_name, phase)
        if method.lang_adapters != bool(lang_adapter_run_id):
            raise XstiltsInputError(
                f"method {method.name} needs lang_adapter_run_id (a lang_adapter run in the training language)"
                if method.lang_adapters else
                f"method {method.name} uses no language adapter; lang_adapter_run_id belongs to "
                f"{', '.join(name for name, m in METHODS.items() if m.lang_adapters)}")
        return cls(method, lang_adapter_run_id, task_reduction_factor)

    def params(self) -> dict:
        adapter_params = ({"lang_adapter_run_id": self.lang_adapter_run_id,
                           "task_reduction_factor": self.task_reduction_factor} if self.method.adapters else {})
        return {"method": self.method.name, **adapter_params}

    def check_upstream(self, init_run_id: str, upstream_params: dict) -> None:
        check_upstream(self.method, init_run_id, upstream_params.get("method", "full") if init_run_id else "")

    def training_setup(self, task: str, train_lang: str, model_name: str, init_run_id: str,
                       work_dir: Path) -> TaskAdapterTraining | None:
        """What `components.training.train` calls on the loaded model (None for full fine-tuning); downloads the
        language adapter and, for adapter_stilts, the intermediate-task adapter into `work_dir`."""
        if not self.method.adapters:
            return None
        unsupported = unsupported_reason(self.method, get_task(task))
        if unsupported:
            raise XstiltsInputError(f"{unsupported}: use method full")
        base_name = base_model_label(model_name, init_run_id if self.method.encoder_from_upstream else "")
        lang_dir = None
        if self.method.lang_adapters:
            params = lang_adapter_params(self.lang_adapter_run_id, train_lang)
            check_exclusion_recorded(self.lang_adapter_run_id, params, task)
            lang_dir = download_lang_adapter(self.lang_adapter_run_id, train_lang, work_dir)
        init_dir = (download_task_adapter(init_run_id, work_dir) if self.method.continues_task_adapter else None)
        return TaskAdapterTraining(task, base_name, self.task_reduction_factor, lang_dir, init_dir)


FULL_FINE_TUNING = MethodChoice(METHODS["full"])


def base_model_label(model_name: str, encoder_run_id: str) -> str:
    """How saved adapters name their base model: the registry model, or the encoder of an upstream run."""
    return f"{model_name} fine-tuned by run {encoder_run_id}" if encoder_run_id else model_name


def lang_adapter_params(run_id: str, lang: str) -> dict[str, str]:
    """The params of a FINISHED lang_adapter run, which must have trained the `lang` adapter."""
    params = tracking.finished_run(run_id, LANG_ADAPTER_PHASE).data.params
    if params.get("lang") != lang:
        raise XstiltsInputError(f"lang_adapter run {run_id} trained the {params.get('lang')!r} adapter; "
                                f"expected one in {lang!r}")
    return params


def download_lang_adapter(run_id: str, lang: str, work_dir: Path) -> Path:
    """The `lang` adapter folder of lang_adapter run `run_id` (a run `lang_adapter_params` accepts for `lang`)."""
    return tracking.download_artifact(run_id, f"{tracking.ADAPTERS_ARTIFACT}/{lang_adapter_name(lang)}",
                                      work_dir / LANG / lang)


def download_task_adapter(run_id: str, work_dir: Path) -> Path:
    """The task adapter of an adapter run (its task is the run's `task` param)."""
    task = tracking.finished_run(run_id, "intermediate", "target").data.params["task"]
    return tracking.download_artifact(run_id, f"{tracking.ADAPTERS_ARTIFACT}/{task_adapter_name(task)}",
                                      work_dir / "task" / run_id)


@tracking.main_process_only  # the other processes of a distributed launch have trained the same adapter
def log_adapter_outputs(setup: TaskAdapterTraining, labels, result, work_dir: Path) -> None:
    """Logs the trained task adapter and head, the language adapter's size, and the parameter counts."""
    adapter_dir, head_dir = work_dir / "adapter", work_dir / "head"
    setup.save(adapter_dir, head_dir, labels)
    tracking.log_dir(adapter_dir, f"{tracking.ADAPTERS_ARTIFACT}/{setup.adapter_name}")
    tracking.log_dir(head_dir, f"{tracking.HEADS_ARTIFACT}/{setup.adapter_name}")
    lang = {"lang_reduction_factor": setup.lang_info.reduction_factor} if setup.lang_info else {}
    tracking.log_params({"trainable_params": result.trainable_params, "total_params": result.total_params, **lang})


LANG_ADAPTER_PARAM = "lang_adapter"  # per language, `lang_adapter/<task>/<lang>`: which adapter evaluated it


@dataclass(frozen=True)
class LangAdapterUse:
    """The language adapter that evaluates one language: a lang_adapter run and its language, or none."""

    run_id: str
    adapter_lang: str
    described: str  # logged: "<run id>", "fallback source <run id>" or "fallback none"


def lang_adapter_plan(languages: list[str], source_lang: str, source_run_id: str, run_ids: str,
                      fallback: str) -> dict[str, LangAdapterUse]:
    """Which adapter evaluates each language: its own (from `run_ids`, FINISHED lang_adapter runs, or the source
    run), else the chosen fallback. A missing adapter is never silently replaced.

    Raises:
        XstiltsInputError: an unknown fallback, a run that is not a FINISHED lang_adapter run, two runs for one
            language, or a language without an adapter while no fallback is chosen.
    """
    if fallback and fallback not in LANG_ADAPTER_FALLBACKS:
        raise XstiltsInputError(f"lang_adapter_fallback {fallback!r}: expected one of "
                                f"{', '.join(LANG_ADAPTER_FALLBACKS)}, or nothing (every language needs its adapter)")
    own = {source_lang: source_run_id}
    for run_id in (run_id.strip() for run_id in run_ids.split(",") if run_id.strip()):
        lang = tracking.finished_run(run_id, LANG_ADAPTER_PHASE).data.params["lang"]
        if own.get(lang, run_id) != run_id:
            raise XstiltsInputError(f"two language adapters for {lang!r}: runs {own[lang]} and {run_id}")
        own[lang] = run_id
    missing = [lang for lang in languages if lang not in own]
    if missing and not fallback:
        raise XstiltsInputError(
            f"no language adapter for {', '.join(missing)}: pass their lang_adapter runs in lang_adapter_runs, or "
            f"choose lang_adapter_fallback source (the {source_lang} adapter) or none (the task adapter alone)")
    fallbacks = {"source": LangAdapterUse(source_run_id, source_lang, f"fallback source {source_run_id}"),
                 "none": LangAdapterUse("", "", "fallback none")}
    return {lang: LangAdapterUse(own[lang], lang, own[lang]) if lang in own else fallbacks[fallback]
            for lang in languages}


def check_lang_adapter_exclusions(plan: dict[str, LangAdapterUse], task: str, protocol: str,
                                  max_examples: int) -> None:
    """Refuses the plan unless each language scored on its own adapter has that adapter's corpus leave out every text
    the evaluation scores there (`components.corpus.check_exclusion_covers`): `protocol` and `max_examples` are the
    evaluation's. A fallback adapter's corpus is in another language, so it holds none of the language's texts."""
    spec = get_task(task)
    for lang, use in plan.items():
        if use.adapter_lang == lang:
            check_exclusion_covers(use.run_id, lang_adapter_params(use.run_id, lang), spec, protocol, lang,
                                   max_examples)


def load_adapter_task_model(train_run_id: str, run_params: dict, spec, plan: dict[str, LangAdapterUse],
                            work_dir: Path):
    """The base model of an adapter `target` run with its task adapter and head, and every language adapter of
    `plan`; returns (model, tokenizer, use_language), where `use_language(lang)` activates `Stack(<lang's adapter>,
    task)`."""
    method = METHODS[run_params["method"]]
    resolved = resolve_model(run_params["model"])
    init_run_id = run_params.get("init_run_id", "") if method.encoder_from_upstream else ""
    base = (resolve_model(str(tracking.download_model(init_run_id, "intermediate", work_dir / "encoder")))
            if init_run_id else resolved)
    name = task_adapter_name(spec.name)
    adapter_dir, head_dir = (tracking.download_artifact(train_run_id, f"{folder}/{name}", work_dir / "trained")
                             for folder in (tracking.ADAPTERS_ARTIFACT, tracking.HEADS_ARTIFACT))
    host, task = load_task_adapter_model(load_task_model(spec, base), base_model_label(resolved.name, init_run_id),
                                         adapter_dir, head_dir, spec.labels)
    loaded = {}
    for use in plan.values():
        if use.run_id and use.run_id not in loaded:
            loaded[use.run_id] = host.load(download_lang_adapter(use.run_id, use.adapter_lang, work_dir), LANG).name
    return host.model, load_tokenizer(resolved), lambda lang: host.activate(task, loaded.get(plan[lang].run_id))

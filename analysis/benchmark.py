"""XTREME and XTREME-R as data, derived from the task registry (`components.tasks`), plus the low-resource list.

The choices, following ../shared/docs/benchmarks.md §2.3, §3.2 and §4.3-4.4:

- **XTREME-R**: 10 tasks in 4 groups, read off `TaskSpec.xtreme_r_group`: classification (xnli, xcopa), tagging
  (udpos, panx), qa (xquad, mlqa, tydiqa), retrieval (mewslix, lareqa, tatoeba). **XCOPA is counted once, in
  classification**: the official scorer also lists it in a `multi_choice` group, which would weigh it twice in a
  mean over groups. **LAReQA is included** (retrieval, mAP@20): the official `evaluate.py` has no entry for it and so
  never produces an overall score. Languages: the registry's lists (the XTREME-R lists).
- **XTREME (v1)**: 9 tasks, read off `TaskSpec.xtreme_group`: classification (xnli, pawsx), tagging (udpos, panx),
  qa (xquad, mlqa, tydiqa), retrieval (tatoeba, bucc2018). Languages: the registry's list minus the ten languages
  XTREME-R added (az gu ht lt pa pl qu ro uk wo), which gives XTREME's lists exactly (udpos 33, panx 40, tatoeba 36,
  xquad 11).
- **Score of a task in a language**: the task's headline metric (accuracy, seqeval F1, mAP@20, BUCC F1). QA tasks
  enter in two labelled variants: `f1` (F1 only) and `em_f1_mean` ((EM + F1) / 2, the official code's choice).
- **English** is included in task averages wherever the task lists it (the benchmarks' convention; Tatoeba and BUCC
  do not); every task average also exists without English.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from components.errors import XstiltsInputError
from components.settings import PROJECT_ROOT
from components.tasks import TASKS, TaskSpec, TaskType

ENGLISH = "en"
EM_F1_MEAN = "em_f1_mean"
QA_VARIANTS = ("f1", EM_F1_MEAN)
XTREME_R_NEW_LANGS = frozenset("az gu ht lt pa pl qu ro uk wo".split())
REGISTRY_LANGS: dict[str, tuple[str, ...]] = {name: spec.langs for name, spec in TASKS.items()}
ALL_LANGS = frozenset(lang for langs in REGISTRY_LANGS.values() for lang in langs)
DEFAULT_LOW_RESOURCE_CONFIG = PROJECT_ROOT / "configs" / "low_resource_languages.yaml"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark as data: its groups of tasks and the languages each task is averaged over.

    Attributes:
        name: "XTREME-R" or "XTREME".
        groups: group name -> task names, in registry order.
        langs: task name -> the languages of its average.
    """

    name: str
    groups: dict[str, tuple[str, ...]]
    langs: dict[str, tuple[str, ...]]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(task for tasks in self.groups.values() for task in tasks)


def _benchmark(name: str, group_of: Callable[[TaskSpec], str | None],
               langs_of: Callable[[TaskSpec], tuple[str, ...]]) -> Benchmark:
    groups: dict[str, list[str]] = {}
    for spec in TASKS.values():
        if group_of(spec):
            groups.setdefault(group_of(spec), []).append(spec.name)
    return Benchmark(name, {group: tuple(tasks) for group, tasks in groups.items()},
                     {task: langs_of(TASKS[task]) for tasks in groups.values() for task in tasks})


XTREME_R = _benchmark("XTREME-R", lambda spec: spec.xtreme_r_group, lambda spec: spec.langs)
XTREME = _benchmark("XTREME", lambda spec: spec.xtreme_group,
                    lambda spec: tuple(lang for lang in spec.langs if lang not in XTREME_R_NEW_LANGS))
BENCHMARKS = (XTREME_R, XTREME)


def is_qa(task: str) -> bool:
    return TASKS[task].task_type == TaskType.EXTRACTIVE_QA


def score_metric(task: str, qa_variant: str) -> str:
    """The metric a task enters averages with: `qa_variant` (`f1` or `em_f1_mean`) for QA, else the headline metric."""
    return qa_variant if is_qa(task) else TASKS[task].headline_metric


def score_metrics(task: str) -> tuple[str, ...]:
    """Every metric a task's averages are computed for (two for QA tasks, one otherwise)."""
    return tuple(dict.fromkeys(score_metric(task, variant) for variant in QA_VARIANTS))


def low_resource_langs(listed: str, config: Path = DEFAULT_LOW_RESOURCE_CONFIG) -> tuple[str, ...]:
    """The low-resource languages: `listed` (comma-separated) when given, else the `low_resource_langs` of `config`.

    Raises:
        XstiltsInputError: a language no registry task is evaluated in, or an unreadable config.
    """
    if listed.strip():
        langs = [lang.strip() for lang in listed.split(",") if lang.strip()]
    else:
        try:
            langs = yaml.safe_load(config.read_text(encoding="utf-8"))["low_resource_langs"]
        except (OSError, yaml.YAMLError, TypeError, KeyError) as error:
            raise XstiltsInputError(f"{config}: expected a YAML file with a `low_resource_langs:` list ({error})") \
                from None
    return checked_langs(langs, "low-resource language(s)")


def language_scope(listed: str) -> tuple[str, ...]:
    """The languages `--langs` restricts the averages to (comma-separated); empty = no restriction."""
    return checked_langs([lang.strip() for lang in listed.split(",") if lang.strip()], "language(s) in langs")


def checked_langs(langs: list[str], what: str) -> tuple[str, ...]:
    unknown = sorted(set(langs) - ALL_LANGS)
    if unknown:
        raise XstiltsInputError(f"unknown {what} {', '.join(unknown)}; expected codes of the registry's languages: "
                                f"{', '.join(sorted(ALL_LANGS))}")
    return tuple(langs)

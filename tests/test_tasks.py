import pytest

from components.errors import XstiltsInputError
from components.tasks import TASKS, TaskType, get_task

XTREME_R = ("xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "mewslix", "lareqa", "tatoeba")
REFERENCE_INTERMEDIATE = ("mnli", "anli", "qqp", "sst2", "squad", "squad_v2", "hellaswag", "commonsenseqa",
                          "cosmosqa", "siqa", "ccg")


def test_registry_holds_every_benchmark_and_intermediate_task():
    assert set(XTREME_R + ("pawsx", "bucc2018") + REFERENCE_INTERMEDIATE) <= set(TASKS)
    assert {name for name, spec in TASKS.items() if spec.xtreme_r_group} == set(XTREME_R)
    assert {name for name, spec in TASKS.items() if spec.xtreme_group} == {
        "xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"}


@pytest.mark.parametrize("task, n_langs", [  # XTREME-R language counts (benchmarks.md §2.1, §3.1)
    ("xnli", 15), ("xcopa", 11), ("udpos", 38), ("panx", 48), ("xquad", 12), ("mlqa", 7), ("tydiqa", 9),
    ("mewslix", 11), ("lareqa", 11), ("tatoeba", 41), ("pawsx", 7), ("bucc2018", 4)])
def test_language_counts(task, n_langs):
    assert len(set(get_task(task).langs)) == len(get_task(task).langs) == n_langs


def test_english_training_sources_follow_xtreme():
    assert get_task("xnli").train_sources == ("mnli",)
    assert get_task("xquad").train_sources == get_task("mlqa").train_sources == ("squad",)
    assert get_task("xcopa").train_sources == ("siqa", "copa")
    assert get_task("tatoeba").train_sources is None and get_task("tatoeba").task_type is TaskType.RETRIEVAL


def test_unknown_task_and_language_name_the_value():
    with pytest.raises(XstiltsInputError, match="unknown task 'xnlii'"):
        get_task("xnlii")
    with pytest.raises(XstiltsInputError, match="unknown language 'qu' for task 'xnli'"):
        get_task("xnli").check_lang("qu")

"""The benchmark definitions read off the registry: groups, language lists and the low-resource list."""

import pytest

from analysis.benchmark import XTREME, XTREME_R, low_resource_langs, score_metrics
from components.errors import XstiltsInputError


def test_xtreme_r_has_ten_tasks_with_xcopa_once_and_lareqa_in_retrieval():
    assert XTREME_R.groups == {"classification": ("xnli", "xcopa"), "tagging": ("udpos", "panx"),
                               "qa": ("xquad", "mlqa", "tydiqa"), "retrieval": ("mewslix", "lareqa", "tatoeba")}
    assert {task: len(langs) for task, langs in XTREME_R.langs.items()} == {
        "xnli": 15, "xcopa": 11, "udpos": 38, "panx": 48, "xquad": 12, "mlqa": 7, "tydiqa": 9, "mewslix": 11,
        "lareqa": 11, "tatoeba": 41}


def test_xtreme_has_nine_tasks_on_its_own_language_lists():
    assert XTREME.groups == {"classification": ("xnli", "pawsx"), "tagging": ("udpos", "panx"),
                             "qa": ("xquad", "mlqa", "tydiqa"), "retrieval": ("tatoeba", "bucc2018")}
    assert {task: len(langs) for task, langs in XTREME.langs.items()} == {
        "xnli": 15, "pawsx": 7, "udpos": 33, "panx": 40, "xquad": 11, "mlqa": 7, "tydiqa": 9, "tatoeba": 36,
        "bucc2018": 4}
    assert "ro" not in XTREME.langs["xquad"] and "en" not in XTREME.langs["tatoeba"]


def test_qa_tasks_enter_in_both_variants():
    assert score_metrics("xquad") == ("f1", "em_f1_mean")
    assert score_metrics("udpos") == ("f1",) and score_metrics("mewslix") == ("map_at_20",)


def test_low_resource_list_from_config_or_option():
    assert low_resource_langs("") == ("sw", "yo", "jv", "tl", "wo", "qu", "ht", "my", "kk", "te", "ta", "ml", "mr",
                                      "ur", "gu", "pa")
    assert low_resource_langs(" sw, yo ") == ("sw", "yo")
    with pytest.raises(XstiltsInputError, match=r"unknown low-resource language\(s\) klingon"):
        low_resource_langs("sw,klingon")


def test_unreadable_low_resource_config_fails_clearly(tmp_path):
    config = tmp_path / "low.yaml"
    config.write_text("languages: [sw]\n")
    with pytest.raises(XstiltsInputError, match="expected a YAML file with a `low_resource_langs:` list"):
        low_resource_langs("", config)

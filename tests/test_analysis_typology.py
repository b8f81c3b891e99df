"""URIEL+ distances, offline: every registry language has one, and a language without data is a flagged gap."""

import math

import pytest

from analysis import typology
from analysis.benchmark import ALL_LANGS
from components.errors import XstiltsInputError


def test_every_registry_language_has_a_syntactic_distance_from_english():
    table = typology.distances([("en", lang) for lang in ALL_LANGS]).set_index("lang")
    assert table["distance"].notna().all(), table[table["distance"].isna()]
    assert table["distance"].between(0, 1).all()
    assert table.loc["en", "distance"] == 0
    assert table.loc["de", "distance"] < table.loc["ja", "distance"]  # German is typologically closer to English


def test_a_language_without_uriel_data_is_a_gap_with_a_reason():
    row = typology.distances([("en", "zz")]).iloc[0]
    assert math.isnan(row["distance"]) and row["distance_note"] == "no URIEL+ entry for zz"


def test_unknown_distance_kind_is_refused():
    with pytest.raises(XstiltsInputError, match="unknown distance kind 'syntax'"):
        typology.distances([("en", "de")], "syntax")

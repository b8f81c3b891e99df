"""Typological distance between an intermediate task's source language and each target language, from URIEL+.

URIEL+ (PyPI `urielplus`, which ships its database: no download at run time) computes the angular distance between
two languages' URIEL feature vectors over the features both languages have values for: 0 = identical,
1 = orthogonal. The default kind is `syntactic` (the WALS/SSWL-derived `S_*` features), the usual choice in
cross-lingual transfer studies; `featural`, `genetic`, `geographic`, `inventory`, `phonological` and `morphological`
are the other kinds URIEL+ offers. Language codes are ISO 639-1 in xstilts and ISO 639-3 in URIEL; a macrolanguage
maps to its macrolanguage code (ar -> ara, zh -> zho, ms -> msa, fa -> fas, et -> est, sw -> swa, qu -> que), the
standard 639-1 -> 639-3 correspondence. A pair URIEL+ has no data for gets no distance, with the reason.
"""

import functools
import logging
from contextlib import contextmanager
from typing import Iterable, Iterator

import pandas as pd

from components.errors import XstiltsInputError

DISTANCE_KINDS = ("syntactic", "featural", "genetic", "geographic", "inventory", "phonological", "morphological")
DEFAULT_DISTANCE = "syntactic"
DISTANCE_COLUMNS = ("source_lang", "lang", "distance", "distance_note")
ISO_639_3 = {
    "af": "afr", "ar": "ara", "az": "aze", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "en": "eng",
    "es": "spa", "et": "est", "eu": "eus", "fa": "fas", "fi": "fin", "fr": "fra", "gu": "guj", "he": "heb",
    "hi": "hin", "ht": "hat", "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat",
    "kk": "kaz", "ko": "kor", "lt": "lit", "ml": "mal", "mr": "mar", "ms": "msa", "my": "mya", "nl": "nld",
    "pa": "pan", "pl": "pol", "pt": "por", "qu": "que", "ro": "ron", "ru": "rus", "sw": "swa", "ta": "tam",
    "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "uk": "ukr", "ur": "urd", "vi": "vie", "wo": "wol",
    "yo": "yor", "zh": "zho",
}


def check_kind(kind: str) -> str:
    if kind not in DISTANCE_KINDS:
        raise XstiltsInputError(f"unknown distance kind {kind!r}; expected one of: {', '.join(DISTANCE_KINDS)}")
    return kind


def distances(pairs: Iterable[tuple[str, str]], kind: str = DEFAULT_DISTANCE) -> pd.DataFrame:
    """The URIEL+ `kind` distance of each (source language, target language) pair.

    Args:
        pairs: ISO 639-1 (or 639-3) code pairs.
        kind: one of `DISTANCE_KINDS`.

    Returns:
        `DISTANCE_COLUMNS`: `distance` is NaN where URIEL+ cannot tell, and `distance_note` says why.
    """
    check_kind(kind)
    rows = []
    for source, target in sorted(set(pairs)):
        distance, note = _distance(kind, source, target)
        rows.append((source, target, distance, note))
    return pd.DataFrame(rows, columns=list(DISTANCE_COLUMNS))


def _distance(kind: str, source: str, target: str) -> tuple[float, str]:
    codes = [ISO_639_3.get(lang, lang) for lang in (source, target)]
    unknown = [lang for lang, code in zip((source, target), codes) if code not in _uriel().langs[0]]
    if unknown:
        return float("nan"), f"no URIEL+ entry for {', '.join(unknown)}"
    try:
        with _quiet():
            return float(_uriel().new_distance(kind, *codes)), ""
    except ValueError as error:
        # URIEL+ refuses a pair that shares no feature of this kind.
        return float("nan"), f"URIEL+ has no {kind} data for {source}-{target} ({str(error).splitlines()[0]})"


@functools.cache
def _uriel():
    """The URIEL+ knowledge base, loaded once (about a second)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        # Importing urielplus calls logging.basicConfig(level=INFO), which would print every query on stderr.
        from urielplus.urielplus import URIELPlus
        with _quiet():
            return URIELPlus()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silences URIEL+'s per-query INFO lines."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)

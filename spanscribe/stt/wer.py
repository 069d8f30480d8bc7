"""Word error rate with a small, explicit text normalisation (pure, no dependencies).

WER = (substitutions + deletions + insertions) / number of reference words, computed by Levenshtein
alignment over normalised word lists. Normalisation: Unicode NFKC, lower case, ``&`` -> "and", hyphens,
slashes and underscores become spaces, apostrophes are dropped inside words ("it's" -> "its"), every
other non-alphanumeric character is removed, whitespace collapses. Numbers are not spelt out: keep digits
out of reference texts you compare with an engine that may write them either way.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_SPLITTERS = re.compile(r"[-/_\u2010-\u2015]")
_APOSTROPHES = re.compile(r"['\u2018\u2019`]")
_NON_WORD = re.compile(r"[^0-9a-z\s]")


def normalize(text: str) -> list[str]:
    """Return the normalised word list of ``text`` (see the module docstring for the rules)."""
    t = unicodedata.normalize("NFKC", text).lower().replace("&", " and ")
    t = _SPLITTERS.sub(" ", t)
    t = _APOSTROPHES.sub("", t)
    t = _NON_WORD.sub(" ", t)
    return t.split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (unit costs)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after ``normalize``.

    Returns:
        errors / reference words, a float >= 0 (it can exceed 1 with many insertions).
    Raises:
        ValueError: the reference has no words after normalisation.
    """
    ref = normalize(reference)
    if not ref:
        raise ValueError("reference text has no words after normalisation")
    return edit_distance(ref, normalize(hypothesis)) / len(ref)

from __future__ import annotations

import pytest

from spanscribe.stt.wer import edit_distance, normalize, wer


def test_normalize_case_punctuation_apostrophes_hyphens() -> None:
    assert normalize("Hi, it's Anna -- the AT&T e-mail/Support!") == [
        "hi", "its", "anna", "the", "at", "and", "t", "e", "mail", "support"]
    assert normalize("  \u2019Tis\u2014fine. ") == ["tis", "fine"]
    assert normalize("...") == []


def test_edit_distance() -> None:
    assert edit_distance([], []) == 0
    assert edit_distance(["a"], []) == 1
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance("a b c".split(), "a x c d".split()) == 2  # one substitution, one insertion


def test_wer_values() -> None:
    assert wer("Thank you very much.", "thank you very much") == 0.0
    assert wer("a b c d", "a c d") == pytest.approx(0.25)
    assert wer("a b", "x y z w") == pytest.approx(2.0)  # insertions can push WER above 1


def test_wer_needs_reference_words() -> None:
    with pytest.raises(ValueError):
        wer(" ?! ", "anything")

"""CI's fast slice of the bad-input corpus (test/corpus/corpus.py): every 4th
case, each in its own process; `python test/corpus/corpus.py` runs them all."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))
import corpus  # noqa: E402

SLICE = corpus.all_cases()[::4]


def test_the_corpus_is_big_enough():
    cases = corpus.all_cases()
    assert len(cases) >= 300
    assert {c.surface for c in cases} == {"opt", "python", "cli", "cache"}
    assert {c.surface for c in SLICE} == {"opt", "python", "cli", "cache"}


@pytest.mark.parametrize("case", SLICE, ids=lambda c: c.id)
def test_corpus_case(case):
    why = corpus.run_case(case)
    assert why is None, f"{case.id}: {why}"

"""Differential fuzzing in CI (test/fuzz/attention_fuzz.py): a fixed seed, so a
run is reproducible, plus a rotating one printed in the log, so CI keeps
exploring; and every saved reproducer under test/regressions/ replayed."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import attention_fuzz  # noqa: E402

FIXED_SEED = 20261130
EXAMPLES = int(os.environ.get("ATTNCC_FUZZ_EXAMPLES", "120"))


def test_fuzz_fixed_seed():
    attention_fuzz.fuzz(EXAMPLES, FIXED_SEED)


def test_fuzz_rotating_seed(capsys):
    seed = int(os.environ.get("ATTNCC_FUZZ_SEED", int(time.time()) % 2 ** 31))
    with capsys.disabled():
        print(f"\nattncc fuzz: rotating seed {seed} (replay: ATTNCC_FUZZ_SEED={seed})")
    attention_fuzz.fuzz(EXAMPLES, seed)


@pytest.mark.parametrize("path", sorted(attention_fuzz.REGRESSIONS.glob("fuzz-*.json")),
                         ids=lambda p: p.stem)
def test_saved_reproducers(path):
    attention_fuzz.replay(path)

"""The bf16-pairs classes' shared checks (x86-64-v4-amx, x86-64-v4-bf16): the
same examples and property strategy, for the class given."""
from __future__ import annotations

from dataclasses import asdict

from hypothesis import strategies as st

from test_variants import Case

EXAMPLES = {
    "causal_d64": Case(lq=77, lk=77, head_dim=64, dtype="bf16", causal=True, block_m=32,
                       block_n=64),
    "gqa_window_softcap_d128": Case(kv_heads=2, group=4, lq=40, lk=150, head_dim=128,
                                    dtype="bf16", causal=True, align="bottom_right",
                                    window=(50, 0), softcap=30.0, block_m=16, block_n=32),
    "alibi_sinks_d32": Case(lq=65, lk=130, head_dim=32, dtype="bf16", alibi=True, sinks=True,
                            block_m=64, block_n=64, dynamic=True),
}


def example(name: str, cpu: str) -> Case:
    return Case(**{**asdict(EXAMPLES[name]), "cpu": cpu})


def cases(cpu: str):
    """bf16 cases of every variant, GQA and length off the blocks, for `cpu`."""
    return st.builds(
        Case,
        batch=st.sampled_from([1, 2]),
        kv_heads=st.sampled_from([1, 2]),
        group=st.sampled_from([1, 2, 4]),
        lq=st.sampled_from([1, 16, 31, 70]),
        lk=st.sampled_from([1, 33, 64, 100, 160]),
        head_dim=st.sampled_from([32, 64, 128]),
        dtype=st.just("bf16"),
        causal=st.booleans(),
        align=st.sampled_from(["top_left", "bottom_right"]),
        window=st.one_of(st.none(), st.tuples(st.sampled_from([-1, 0, 10, 40]),
                                              st.sampled_from([-1, 0, 5]))),
        softcap=st.one_of(st.none(), st.just(20.0)),
        alibi=st.booleans(),
        sinks=st.booleans(),
        dynamic=st.sampled_from([False, True]),
        block_m=st.sampled_from([16, 32, 64]),
        block_n=st.sampled_from([32, 64]),
        seed=st.integers(0, 2 ** 16),
        cpu=st.just(cpu),
    )

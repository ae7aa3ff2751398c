"""attncc quickstart: build an attention graph from Python, print its IR at
every pipeline stage it goes through.

    python examples/quickstart.py
"""
from mlir import ir

import attncc
from attncc import pipeline


def main() -> None:
    g = attncc.Graph("attention")
    q = g.input("q", (1, 8, 1024, 64), "f16")
    k = g.input("k", (1, 2, 1024, 64), "f16")  # GQA: 4 query heads per KV head
    v = g.input("v", (1, 2, 1024, 64), "f16")
    kr, vr = g.repeat_heads(k, 4), g.repeat_heads(v, 4)
    scores = g.scale(g.matmul(q, kr, transpose_rhs=True, dtype="f32"), 64 ** -0.5)
    probs = g.softmax(g.mask(scores, "causal"))
    g.output(g.cast(g.matmul(probs, g.cast(vr, "f32")), "f16"))

    with attncc.mlir_context():
        module = ir.Module.parse(str(g))
        stages = pipeline.lower(module, pipeline.STAGE_NAMES[-1])
    for name, text in stages.items():
        print(f"// ===== stage: {name} =====")
        print(text)


if __name__ == "__main__":
    main()

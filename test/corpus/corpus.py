"""The standing bad-input corpus: hostile and broken inputs to every surface of
attncc, each run in its own process so that a crash is seen as one.

Surfaces: attncc-opt (malformed IR, bad pass options, mutants of the lit
tests' inputs), the Python API (attention, compile, options, the graph
builder), the command line, and the kernel caches (CPU and GPU: corrupt,
foreign, unreadable entries, 8 concurrent processes, SIGINT mid-compile).

A case fails when its process dies on a signal, prints `LLVM ERROR`, an
assertion, a stack dump or a Python traceback where a clean error was due, or
gives a result other than the expected one (a wrong-but-silent answer: Python
cases that must succeed check their numbers against a float64 reference).

    python test/corpus/corpus.py                 # the whole corpus, 2 workers
    python test/corpus/corpus.py --slice 5       # every 5th case (CI's fast slice)
    python test/corpus/corpus.py -k opt -v       # one surface, every case listed
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[2]
CRASH = re.compile(r"LLVM ERROR|Assertion .* failed|Stack dump|PLEASE submit a bug report|"
                   r"Segmentation fault|Fatal Python error|core dumped|terminate called")


@dataclass
class Case:
    id: str
    surface: str                       # opt | python | cli | cache
    argv: list[str]
    stdin: Optional[str] = None
    # "clean-error": non-zero status with a message, no traceback;
    # "no-crash": any status, no crash; "ok": status 0 and the checks in the
    # case itself passed (python cases print RESULT ok).
    expect: str = "clean-error"
    message: Optional[str] = None      # regex the output must contain
    timeout: float = 300.0
    env: dict = field(default_factory=dict)
    custom: Optional[Callable[["Case"], Optional[str]]] = None   # returns a failure or None


def _opt() -> str:
    # attncc as installed: putting the source tree on sys.path would make
    # every subprocess (which inherits sys.path as PYTHONPATH) import the
    # sources without the built extension.
    from attncc.tools import tool_path

    return str(tool_path("attncc-opt"))


# ----------------------------------------------------------------------------- attncc-opt

ATT = ("func.func @f(%q: tensor<1x2x64x64xf16>) -> tensor<1x2x64x64xf16> {\n"
       "  %0 = attn.attention %q, %q, %q scale 0.125 mask causal kv_group 1\n"
       "      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16> "
       "-> tensor<1x2x64x64xf16>\n  return %0 : tensor<1x2x64x64xf16>\n}\n")

MALFORMED_IR = {
    "empty": "",
    "garbage": "this is not MLIR at all \x00\x01",
    "unterminated-func": "func.func @f() {\n",
    "unknown-attn-op": "func.func @f() { attn.frobnicate }",
    "attention-no-operands": "func.func @f() { %0 = attn.attention : () -> tensor<1xf32> }",
    "attention-rank1": ATT.replace("1x2x64x64", "64"),
    "attention-rank5": ATT.replace("1x2x64x64", "1x1x2x64x64"),
    "attention-zero-heads": ATT.replace("1x2x64x64", "1x0x64x64"),
    "attention-zero-len": ATT.replace("1x2x64x64", "1x2x0x64"),
    "attention-zero-dim": ATT.replace("1x2x64x64", "1x2x64x0"),
    "attention-dynamic": ATT.replace("1x2x64x64", "?x?x?x64"),
    "attention-i32": ATT.replace("xf16", "xi32"),
    "attention-f8": ATT.replace("xf16", "xf8E4M3FN"),
    "attention-nan-scale": ATT.replace("0.125", "0x7FF8000000000000"),
    "attention-inf-scale": ATT.replace("0.125", "0x7FF0000000000000"),
    "attention-neg-group": ATT.replace("kv_group 1", "kv_group -3"),
    "attention-huge-group": ATT.replace("kv_group 1", "kv_group 9223372036854775807"),
    "attention-bad-mask": ATT.replace("mask causal", "mask sideways"),
    "attention-window-0": ATT.replace("mask causal", "mask sliding_window window 0"),
    "attention-window-neg": ATT.replace("mask causal", "mask sliding_window window -5"),
    "attention-huge-dims": ATT.replace("1x2x64x64", "1x2x4611686018427387904x64"),
    "attention-huge-batch": ATT.replace("1x2x64x64", "9223372036854775806x2x64x64"),
    "missing-return": ATT.replace("  return %0 : tensor<1x2x64x64xf16>\n", ""),
    "wrong-return-type": ATT.replace("return %0 : tensor<1x2x64x64xf16>",
                                     "return %0 : tensor<1x2x64x64xf32>"),
    "two-functions": ATT + ATT.replace("@f", "@g"),
    "nested-module": "module { module { " + ATT + " } }",
    "deep-nesting": "func.func @f() {" + "scf.execute_region {" * 200 + "}" * 201,
    "long-name": ATT.replace("@f", "@" + "f" * 100000),
    "unicode": ATT.replace("@f", '@"\u00e9\u4e2d"'),
}

# Malformed modules whose diagnostic is known: a clean error with this text.
IR_ERRORS = {
    "attention-nan-scale": "scale must be finite",
    "attention-inf-scale": "scale must be finite",
    "attention-huge-dims": "more elements than a 64-bit byte size can count",
    "attention-huge-batch": "more elements than a 64-bit byte size can count",
    "attention-bad-mask": "error",
    "attention-neg-group": "kv_group must be at least 1",
}

PASS_PIPELINES = {
    "fuse": "-attn-fuse",
    "tile": "-attn-tile",
    "tile-pipe": "-attn-tile -attn-pipeline",
    "tile-pipe-unroll": "-attn-tile -attn-pipeline -attn-unroll=factor=2",
    "to-cpu": "-attn-tile -attn-pipeline -attn-lower-to-cpu",
    "to-gpu": "-attn-tile -attn-lower-to-gpu",
}

BAD_OPTIONS = [
    "-attn-tile=block-m=0", "-attn-tile=block-m=-64", "-attn-tile=block-m=3",
    "-attn-tile=block-m=8192", "-attn-tile=block-n=9223372036854775807",
    "-attn-tile=block-m=abc", "-attn-tile=block-m=", "-attn-tile=nonsense=1",
    "-attn-tile=block-m=1e3", "-attn-tile=block-m=0x40",
    "-attn-pipeline=num-stages=0", "-attn-pipeline=num-stages=-1", "-attn-pipeline=num-stages=99",
    "-attn-pipeline=num-stages=2.5", "-attn-pipeline=num-stages=true",
    "-attn-unroll=factor=0", "-attn-unroll=factor=-2", "-attn-unroll=factor=3",
    "-attn-unroll=factor=1000000", "-attn-unroll=loop=q", "-attn-unroll=factor=x",
    "-attn-lower-to-cpu=vector-width=0", "-attn-lower-to-cpu=vector-width=12",
    "-attn-lower-to-cpu=vector-width=1024", "-attn-lower-to-cpu=vector-width=-8",
    "-attn-lower-to-cpu=micro-rows=0", "-attn-lower-to-cpu=micro-rows=100",
    "-attn-lower-to-cpu=micro-vectors=-1", "-attn-lower-to-cpu=isa=pentium",
    "-attn-lower-to-gpu=num-warps=0", "-attn-lower-to-gpu=num-warps=3",
    "-attn-lower-to-gpu=num-warps=64", "-attn-lower-to-gpu=chip=sm_10",
    "-attn-lower-to-gpu=chip=", "-attn-lower-to-gpu=mma=hmma",
    "-attn-lower-to-gpu=tma=maybe", "-attn-lower-to-gpu=chip=sm_90a num-warps=2 mma=wgmma",
    "-attn-fuse=block-m=64", "-attn-nonexistent-pass",
]


def _lit_inputs() -> list[tuple[Path, list[str]]]:
    """Each lit test input with the attncc-opt arguments of its first RUN line."""
    out = []
    for path in sorted((REPO / "test").rglob("*.mlir")):
        if "Output" in path.parts:
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"//\s*RUN:\s*(?:not\s+)?attncc-opt\s+%s\s+(.*?)(?:\s*(?:\||2>&1).*)?$",
                         line)
            if m:
                args = [a for a in shlex.split(m.group(1)) if a not in ("-verify-diagnostics",)]
                out.append((path, args))
                break
    return out


def _mutants(text: str, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` small mutations of `text`: a line deleted or duplicated, a number or
    type swapped, a character flipped."""
    lines = text.splitlines()
    body = [i for i, l in enumerate(lines) if l.strip() and not l.lstrip().startswith("//")]
    numbers = [m for m in re.finditer(r"(?<![\w%#@])\d+(?![\w])", text)]
    out = []
    kinds = ["delete", "duplicate", "number", "type", "flip", "swap"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "delete" and body:
            j = rng.choice(body)
            out.append((f"delete-line-{j}", "\n".join(lines[:j] + lines[j + 1:])))
        elif kind == "duplicate" and body:
            j = rng.choice(body)
            out.append((f"dup-line-{j}", "\n".join(lines[:j + 1] + lines[j:])))
        elif kind == "number" and numbers:
            m = rng.choice(numbers)
            new = rng.choice(["0", "1", "3", "65536", "9223372036854775807", "-1"])
            out.append((f"num-{m.start()}-{new}", text[:m.start()] + new + text[m.end():]))
        elif kind == "type":
            a, b = rng.choice([("f16", "f32"), ("f32", "bf16"), ("f32", "i8"), ("index", "i32"),
                               ("memref", "tensor")])
            out.append((f"type-{a}-{b}", text.replace(a, b, 1 + rng.randrange(3))))
        elif kind == "flip" and text:
            j = rng.randrange(len(text))
            out.append((f"flip-{j}", text[:j] + rng.choice("{}()<>%:,x0") + text[j + 1:]))
        elif kind == "swap" and len(body) > 1:
            j, k = sorted(rng.sample(body, 2))
            sw = list(lines)
            sw[j], sw[k] = sw[k], sw[j]
            out.append((f"swap-{j}-{k}", "\n".join(sw)))
    return out


def opt_cases() -> list[Case]:
    opt = _opt()
    cases = []
    for name, ir in MALFORMED_IR.items():
        for pname, passes in PASS_PIPELINES.items():
            if pname in ("fuse", "tile", "to-cpu", "to-gpu") or name.startswith("attention"):
                msg = IR_ERRORS.get(name)
                cases.append(Case(f"opt/ir/{name}/{pname}", "opt", [opt, *passes.split(), "-"],
                                  stdin=ir, expect="clean-error" if msg else "no-crash",
                                  message=msg))
    for opt_arg in BAD_OPTIONS:
        cases.append(Case(f"opt/option/{opt_arg.lstrip('-')}", "opt", [opt, opt_arg, "-"],
                          stdin=ATT, expect="no-crash"))
    rng = random.Random(20261130)
    for path, args in _lit_inputs():
        text = path.read_text()
        for mname, mutated in _mutants(text, rng, 8):
            cases.append(Case(f"opt/mutant/{path.stem}/{mname}", "opt",
                              [opt, "-allow-unregistered-dialect", "-split-input-file", *args, "-"],
                              stdin=mutated, expect="no-crash", timeout=120))
    return cases


# ----------------------------------------------------------------------------- Python API

PRELUDE = textwrap.dedent("""
    import math, sys, torch, torch.nn.functional as F
    import attncc
    from attncc.errors import AttnccError
    def ref(q, k, v, causal=False, mask=None, scale=None):
        q, k, v = q.double(), k.double(), v.double()
        n = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(n, 1), v.repeat_interleave(n, 1)
        s = q @ k.mT * (scale if scale is not None else q.shape[-1] ** -0.5)
        if causal:
            s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), -math.inf)
        if mask is not None:
            s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask.double()
        return torch.softmax(s, -1).nan_to_num(0.0) @ v
    def close(out, want, tol=1e-4):
        assert out.shape == want.shape, (out.shape, want.shape)
        err = (out.double() - want).abs().max().item() if out.numel() else 0.0
        assert err < tol, f"wrong-but-silent: error {err}"
    r = lambda *s, dtype=torch.float32: torch.randn(*s).to(dtype)
    q = r(1, 2, 16, 32); k = r(1, 2, 16, 32); v = r(1, 2, 16, 32)
""")

# (id, body, expected exception class name or "ok", message regex)
PY_CASES: list[tuple[str, str, str, str]] = [
    ("attention/ok", "close(attncc.attention(q, k, v), ref(q, k, v))", "ok", ""),
    ("attention/ok-causal", "close(attncc.attention(q, k, v, causal=True), ref(q, k, v, True))", "ok", ""),
    ("attention/ok-gqa", "k2, v2 = r(1, 1, 16, 32), r(1, 1, 16, 32); close(attncc.attention(q, k2, v2), ref(q, k2, v2))", "ok", ""),
    ("attention/ok-bf16", "a = [x.bfloat16() for x in (q, k, v)]; close(attncc.attention(*a), ref(*a), 2e-2)", "ok", ""),
    ("attention/ok-f16", "a = [x.half() for x in (q, k, v)]; close(attncc.attention(*a), ref(*a), 3e-3)", "ok", ""),
    ("attention/ok-empty-q", "close(attncc.attention(r(1, 2, 0, 32), k, v), ref(r(1, 2, 0, 32), k, v))", "ok", ""),
    ("attention/ok-empty-k", "close(attncc.attention(q, r(1, 2, 0, 32), r(1, 2, 0, 32)), torch.zeros(1, 2, 16, 32).double())", "ok", ""),
    ("attention/ok-len1", "a = r(1, 2, 1, 32); close(attncc.attention(a, k, v), ref(a, k, v))", "ok", ""),
    ("attention/ok-fully-masked", "m = torch.zeros(16, 16, dtype=torch.bool); close(attncc.attention(q, k, v, attn_mask=m), torch.zeros(1, 2, 16, 32).double())", "ok", ""),
    ("attention/ok-transposed-view", "a = r(1, 16, 2, 32).transpose(1, 2); close(attncc.attention(a, k, v), ref(a, k, v))", "ok", ""),
    ("attention/q-not-tensor", "attncc.attention([1, 2], k, v)", "InputTypeError", "q must be a torch.Tensor"),
    ("attention/q-none", "attncc.attention(None, k, v)", "InputTypeError", "q must be"),
    ("attention/rank3", "attncc.attention(r(2, 16, 32), k, v)", "InputError", "shape"),
    ("attention/rank5", "attncc.attention(r(1, 1, 2, 16, 32), k, v)", "InputError", "shape"),
    ("attention/int-dtype", "attncc.attention(q.int(), k.int(), v.int())", "InputError", "dtype"),
    ("attention/f64", "attncc.attention(q.double(), k.double(), v.double())", "InputError", "dtype"),
    ("attention/complex", "attncc.attention(q.cfloat(), k.cfloat(), v.cfloat())", "InputError", "dtype"),
    ("attention/mixed-dtype", "attncc.attention(q, k.half(), v)", "InputError", "one dtype"),
    ("attention/head-dim-mismatch", "attncc.attention(q, r(1, 2, 16, 16), v)", "InputError", "head_dim"),
    ("attention/batch-mismatch", "attncc.attention(q, r(2, 2, 16, 32), r(2, 2, 16, 32))", "InputError", "batch"),
    ("attention/kv-len-mismatch", "attncc.attention(q, k, r(1, 2, 8, 32))", "InputError", "sequence lengths"),
    ("attention/heads-not-multiple", "attncc.attention(r(1, 3, 16, 32), k, v)", "InputError", "multiple"),
    ("attention/zero-kv-heads", "attncc.attention(q, r(1, 0, 16, 32), r(1, 0, 16, 32))", "InputError", "heads"),
    ("attention/meta", "attncc.attention(q.to('meta'), k.to('meta'), v.to('meta'))", "InputError", "meta"),
    ("attention/sparse", "attncc.attention(q.to_sparse(), k, v)", "InputError", "layout"),
    ("attention/scale-nan", "attncc.attention(q, k, v, scale=float('nan'))", "InputError", "scale"),
    ("attention/scale-inf", "attncc.attention(q, k, v, scale=float('inf'))", "InputError", "scale"),
    ("attention/scale-str", "attncc.attention(q, k, v, scale='0.1')", "InputError", "scale"),
    ("attention/scale-bool", "attncc.attention(q, k, v, scale=True)", "InputError", "scale"),
    ("attention/causal-str", "attncc.attention(q, k, v, causal='yes')", "InputTypeError", "causal"),
    ("attention/mask-and-causal", "attncc.attention(q, k, v, causal=True, attn_mask=torch.ones(16, 16, dtype=torch.bool))", "InputError", "not both"),
    ("attention/mask-int", "attncc.attention(q, k, v, attn_mask=torch.ones(16, 16, dtype=torch.int32))", "InputError", "attn_mask"),
    ("attention/mask-bad-shape", "attncc.attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.bool))", "InputError", "mask"),
    ("attention/mask-list", "attncc.attention(q, k, v, attn_mask=[[True]])", "InputTypeError", "attn_mask"),
    ("attention/grad", "attncc.attention(q.requires_grad_(), k, v)", "InputError", "requires grad"),
    ("attention/target-unknown", "attncc.attention(q, k, v, target='tpu')", "OptionError", "target"),
    ("attention/target-gpu-on-cpu-tensors", "attncc.attention(q.half(), k.half(), v.half(), target='sm_80')", "InputError", "target"),
    ("attention/cpu-foreign-isa", "attncc.attention(q, k, v, cpu='aarch64')", "CompileError", "lacks"),
    ("attention/cpu-unknown", "attncc.attention(q, k, v, cpu='pentium')", "OptionError", "cpu"),
    ("options/unknown", "attncc.attention(q, k, v, blockm=64)", "OptionError", "unknown option"),
    ("options/block-m-3", "attncc.attention(q, k, v, block_m=3)", "OptionError", "block_m"),
    ("options/block-m-huge", "attncc.attention(q, k, v, block_m=1 << 40)", "OptionError", "block_m"),
    ("options/block-n-neg", "attncc.attention(q, k, v, block_n=-16)", "OptionError", "block_n"),
    ("options/block-m-float", "attncc.attention(q, k, v, block_m=64.0)", "OptionError", "block_m"),
    ("options/block-m-bool", "attncc.attention(q, k, v, block_m=True)", "OptionError", "block_m"),
    ("options/stages-0", "attncc.attention(q, k, v, num_stages=0)", "OptionError", "num_stages"),
    ("options/stages-bool", "attncc.attention(q, k, v, num_stages=True)", "OptionError", "num_stages"),
    ("options/stages-9", "attncc.attention(q, k, v, num_stages=9)", "OptionError", "num_stages"),
    ("options/unroll-3", "attncc.attention(q, k, v, unroll=3)", "OptionError", "unroll"),
    ("options/unroll-bool", "attncc.attention(q, k, v, unroll=True)", "OptionError", "unroll"),
    ("options/unroll-float", "attncc.attention(q, k, v, unroll=2.0)", "OptionError", "unroll"),
    ("options/threads-0", "attncc.attention(q, k, v, num_threads=0)", "OptionError", "num_threads"),
    ("options/threads-bool", "attncc.attention(q, k, v, num_threads=True)", "OptionError", "num_threads"),
    ("options/warps-3", "attncc.attention(q, k, v, num_warps=3)", "OptionError", "num_warps"),
    ("options/mma-bad", "attncc.attention(q, k, v, mma='hmma')", "OptionError", "mma"),
    ("options/tma-int", "attncc.attention(q, k, v, tma=1)", "OptionError", "tma"),
    ("compile/not-callable", "attncc.compile(42)", "InputTypeError", "function"),
    ("compile/no-tensors", "attncc.compile(lambda a: a)(3)", "InputTypeError", "no tensors"),
    ("compile/not-attention", "attncc.compile(lambda a, b, c: a + b + c)(q, k, v)", "CaptureError", "attention"),
    ("compile/shape-error", "attncc.compile(lambda a, b, c: torch.softmax(a @ b, -1) @ c)(q, r(1, 2, 8, 32), v)", "CaptureError", "could not trace"),
    ("compile/two-outputs", "attncc.compile(lambda a, b, c: (torch.softmax(a @ b.mT, -1) @ c, a))(q, k, v)", "CaptureError", "returns 2 tensors"),
    ("compile/random", "attncc.compile(lambda a, b, c: torch.softmax(a @ b.mT + torch.randn(16, 16), -1) @ c)(q, k, v)", "CaptureError", "random op"),
    ("compile/raises", "def f(a, b, c):\n    raise ValueError('mine')\nattncc.compile(f)(q, k, v)", "CaptureError", "mine"),
    ("compile/grad", "attncc.compile(lambda a, b, c: torch.softmax(a @ b.mT, -1) @ c)(q.requires_grad_(), k, v)", "InputError", "requires grad"),
    ("compile/stop-after-bad", "attncc.compile(lambda a, b, c: a, stop_after='nope')", "OptionError", "stage"),
    ("compile/stop-after-run", "attncc.compile(lambda a, b, c: torch.softmax(a @ b.mT, -1) @ c, stop_after='tiled')(q, k, v)", "CompileError", "stop_after"),
    ("compile/ok-list", "out = attncc.compile(lambda a, b, c: [torch.softmax(a @ b.mT * 0.25, -1) @ c])(q, k, v); assert isinstance(out, list); close(out[0], ref(q, k, v, scale=0.25))", "ok", ""),
    ("compile/ok-empty", "out = attncc.compile(lambda a, b, c: torch.softmax(a @ b.mT, -1) @ c)(r(1, 2, 0, 32), k, v); assert out.shape == (1, 2, 0, 32)", "ok", ""),
    ("compile/ok-zero-heads", "out = attncc.compile(lambda a, b, c: torch.softmax(a @ b.mT, -1) @ c)(r(1, 0, 16, 32), r(1, 0, 16, 32), r(1, 0, 16, 32)); assert out.shape == (1, 0, 16, 32)", "ok", ""),
    ("compile/ok-nan-propagates", "a = q.clone(); a[0, 0, 3, 0] = float('nan'); out = attncc.attention(a, k, v); assert torch.isnan(out[0, 0, 3]).all() and torch.isfinite(out[0, 1]).all()", "ok", ""),
    ("graph/no-output", "g = attncc.Graph('g'); x = g.input('q', (1, 1, 4, 4), 'f32'); from attncc.compiler import compile_graph; compile_graph(g)", "GraphError", "output"),
    ("graph/bad-dtype", "g = attncc.Graph('g'); g.input('q', (1, 1, 4, 4), 'f7')", "GraphError", ""),
    ("graph/neg-shape", "g = attncc.Graph('g'); g.input('q', (1, -1, 4, 4), 'f32')", "GraphError", ""),
    ("graph/target-unknown", "g = attncc.Graph('g'); x = g.input('q', (1, 1, 4, 4), 'f32'); g.output(g.attention(x, x, x)); from attncc.compiler import compile_graph; compile_graph(g, target='tpu')", "CompileError", "target"),
]


def python_cases() -> list[Case]:
    cases = []
    for cid, body, expect, msg in PY_CASES:
        if expect == "ok":
            code = PRELUDE + body + "\nprint('RESULT ok')\n"
            cases.append(Case(f"python/{cid}", "python", [sys.executable, "-c", code],
                              expect="ok", message="RESULT ok"))
        else:
            code = (PRELUDE + "try:\n" + textwrap.indent(body, "    ") + "\n"
                    "except AttnccError as e:\n"
                    "    print('RESULT', type(e).__name__, '|', e)\n"
                    "else:\n"
                    "    print('RESULT no error')\n")
            cases.append(Case(f"python/{cid}", "python", [sys.executable, "-c", code],
                              expect="ok", message=rf"RESULT {expect} \|.*{msg}"))
    return cases


# ----------------------------------------------------------------------------- CLI

def cli_cases() -> list[Case]:
    attncc = [sys.executable, "-m", "attncc.cli"]
    inputs = REPO / "test" / "python" / "cli_inputs"
    causal = str(inputs / "causal.py")
    bad = [
        ("no-args", []), ("unknown-command", ["frobnicate"]),
        ("missing-file", ["compile", "/nonexistent.py"]),
        ("syntax-error", ["compile", str(inputs / "syntax_error.py")]),
        ("no-function", ["compile", str(inputs / "no_function.py")]),
        ("not-attention", ["run", str(inputs / "not_attention.py")]),
        ("bad-stage", ["compile", causal, "--emit", "nope"]),
        ("bad-target", ["compile", causal, "--target", "tpu"]),
        ("bad-shape", ["compile", causal, "--shape", "1x2xx64"]),
        ("bad-shape-neg", ["compile", causal, "--shape", "1x2x-4x64"]),
        ("bad-shape-alpha", ["compile", causal, "--shape", "1xAx4x64"]),
        ("bad-dtype", ["compile", causal, "--shape", "1x2x8x64", "--dtype", "f7"]),
        ("bad-option", ["compile", causal, "--block-m", "3"]),
        ("bad-option-text", ["compile", causal, "--block-m", "lots"]),
        ("bad-sweep", ["run", causal, "--sweep", "block_m=3,5"]),
        ("bad-compare", ["compare", causal, "--a", "nonsense"]),
        ("bad-function", ["compile", causal + ":nope"]),
        ("output-to-dir", ["compile", causal, "-o", "/"]),
    ]
    cases = [Case(f"cli/{n}", "cli", attncc + a, expect="clean-error") for n, a in bad]
    cases.append(Case("cli/ok-compile", "cli", attncc + ["compile", causal, "--emit", "tiled"],
                      expect="ok", message="attn.kv_loop"))
    cases.append(Case("cli/nan-run", "cli", attncc + ["run", str(inputs / "nan_inputs.py"),
                                                       "--iters", "1", "--warmup", "0"],
                      expect="ok", message="non-finite values"))
    return cases


# ----------------------------------------------------------------------------- caches

CACHE_PRELUDE = textwrap.dedent("""
    import json, os, sys, torch, warnings
    import attncc
    from attncc import Graph
    from attncc.compiler import compile_graph
    from attncc.options import CompileOptions
    def graph(L=32):
        g = Graph('attention')
        q, k, v = (g.input(n, (1, 2, L, 64), DT) for n in 'qkv')
        g.output(g.attention(q, k, v, mask='causal'))
        return g
""")


def _cache_case(cid: str, body: str, dt: str = "f32", target: str = "cpu") -> Case:
    code = CACHE_PRELUDE.replace("DT", repr(dt)) + f"TARGET = {target!r}\n" + body + \
        "\nprint('RESULT ok')\n"
    return Case(f"cache/{cid}", "cache", [sys.executable, "-W", "default", "-c", code],
                expect="ok", message="RESULT ok")


CORRUPTIONS = {"empty": "b''", "garbage": "b'garbage'", "json-list": "b'[]'",
               "json-null": "b'null'", "json-number": "b'42'", "wrong-format": "b'{\"format\": 99}'",
               "binary": "b'\\xff\\xfe\\x00'", "truncated": "None"}


def cache_cases() -> list[Case]:
    cases = []
    for kind, target, dt in (("cpu", "cpu", "f32"), ("gpu", "sm_80", "f16")):
        for name, content in CORRUPTIONS.items():
            body = textwrap.dedent(f"""
                d = os.environ['ATTNCC_CACHE_DIR'] + '/{kind}'
                opts = CompileOptions(num_threads=1)
                first = compile_graph(graph(), opts, target=TARGET)
                (path,) = [os.path.join(d, f) for f in os.listdir(d) if f.endswith('.json')]
                data = {content}
                if data is None:
                    data = open(path, 'rb').read()[:-100]
                open(path, 'wb').write(data)
                from attncc.runtime.kernel_cache import KernelCache
                KernelCache._defaults.clear()
                again = compile_graph(graph(), opts, target=TARGET)
                assert 'cache' not in again.stage_seconds, 'a corrupt entry was used'
                if TARGET == 'cpu':
                    q, k, v = (torch.randn(1, 2, 32, 64) for _ in range(3))
                    want = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
                    assert (again(q, k, v).double() - want).abs().max() < 1e-5
                else:
                    assert again.ptx == first.ptx
            """)
            cases.append(_cache_case(f"{kind}/corrupt-{name}", body, dt, target))
    # unreadable directory (a file where the directory should be)
    cases.append(_cache_case("cpu/dir-is-a-file", textwrap.dedent("""
        root = os.environ['ATTNCC_CACHE_DIR']
        os.makedirs(root, exist_ok=True)
        open(root + '/cpu', 'w').write('not a directory')
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            c = compile_graph(graph(), CompileOptions(num_threads=1))
        assert any('kernel cache' in str(x.message) for x in w), [str(x.message) for x in w]
        q, k, v = (torch.randn(1, 2, 32, 64) for _ in range(3))
        c(q, k, v)
    """)))
    cases.append(_cache_case("gpu/dir-is-a-file", textwrap.dedent("""
        root = os.environ['ATTNCC_CACHE_DIR']
        os.makedirs(root, exist_ok=True)
        open(root + '/gpu', 'w').write('not a directory')
        c = compile_graph(graph(), CompileOptions(), target=TARGET)
        assert c.ptx
    """), "f16", "sm_80"))
    for kind in ("cpu", "gpu"):
        cases.append(Case(f"cache/{kind}/8-concurrent-processes", "cache", [], expect="ok",
                          custom=_concurrent_processes, timeout=600, env={"KIND": kind}))
        cases.append(Case(f"cache/{kind}/sigint-mid-compile", "cache", [], expect="ok",
                          custom=_sigint_mid_compile, timeout=300, env={"KIND": kind}))
    return cases


_COMPILE_AND_CHECK = {
    "cpu": CACHE_PRELUDE.replace("DT", "'f32'") + textwrap.dedent("""
        c = compile_graph(graph(48), CompileOptions(num_threads=1))
        q, k, v = (torch.randn(1, 2, 48, 64) for _ in range(3))
        want = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
        assert (c(q, k, v).double() - want).abs().max() < 1e-5
        print('RESULT ok', 'cache' in c.stage_seconds)
    """),
    # GPU kernels compile (PTX, ptxas) without a GPU; the cached PTX must be
    # the PTX compiled from scratch.
    "gpu": CACHE_PRELUDE.replace("DT", "'f16'") + textwrap.dedent("""
        c = compile_graph(graph(64), CompileOptions(), target='sm_80')
        assert c.ptx and '.entry' in c.ptx
        print('RESULT ok', 'cache' in c.stage_seconds)
    """),
}


def _concurrent_processes(case: Case) -> Optional[str]:
    """Eight processes compile the same kernel into one cache at once; then a
    ninth finds it there."""
    env = dict(os.environ, **case.env)
    kind = case.env["KIND"]
    code = _COMPILE_AND_CHECK[kind]
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=case.timeout)
        if p.returncode != 0 or "RESULT ok" not in out or CRASH.search(err):
            return f"a concurrent process failed (rc {p.returncode}): {err[-800:]}"
    files = list(Path(env["ATTNCC_CACHE_DIR"], kind).glob("*"))
    if [f for f in files if f.suffix == ".tmp"]:
        return f"temporary files left behind: {files}"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=case.timeout).stdout
    if "RESULT ok True" not in out:
        return f"the ninth process did not hit the cache: {out[-300:]}"
    return None


def _sigint_mid_compile(case: Case) -> Optional[str]:
    """SIGINT while a kernel compiles: the process stops with KeyboardInterrupt
    (no crash, no half-written entry); the next process compiles and caches."""
    env = dict(os.environ, **case.env)
    kind = case.env["KIND"]
    code = _COMPILE_AND_CHECK[kind]
    p = subprocess.Popen([sys.executable, "-c", code], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)   # inside the pipeline, the JIT or ptxas
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=case.timeout)
    if CRASH.search(err) or (p.returncode < 0 and p.returncode != -signal.SIGINT):
        return f"crashed on SIGINT (rc {p.returncode}): {err[-800:]}"
    if p.returncode == 0 and "RESULT ok" not in out:
        return "exited 0 without a result"
    d = Path(env["ATTNCC_CACHE_DIR"], kind)
    if d.exists() and [f for f in d.iterdir() if f.suffix == ".tmp"]:
        return "a temporary file was left behind"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=case.timeout)
    if "RESULT ok" not in r.stdout:
        return f"the next process failed: {r.stderr[-800:]}"
    return None


# ----------------------------------------------------------------------------- runner

def all_cases() -> list[Case]:
    return opt_cases() + python_cases() + cli_cases() + cache_cases()


def run_case(case: Case) -> Optional[str]:
    """None when the case behaved; otherwise why not."""
    with tempfile.TemporaryDirectory(prefix="attncc-corpus-") as d:
        case.env = {"ATTNCC_CACHE_DIR": d, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                    **case.env}
        if case.custom:
            return case.custom(case)
        try:
            p = subprocess.run(case.argv, input=case.stdin, capture_output=True, text=True,
                               timeout=case.timeout, env=dict(os.environ, **case.env),
                               errors="replace")
        except subprocess.TimeoutExpired:
            return f"timed out after {case.timeout:.0f} s"
    text = p.stdout + p.stderr
    if p.returncode < 0:
        return f"killed by signal {-p.returncode}: {p.stderr[-800:]}"
    if CRASH.search(text):
        return f"crash output: {CRASH.search(text).group(0)}: {p.stderr[-800:]}"
    if case.expect == "clean-error":
        if p.returncode == 0:
            return "expected an error, got status 0"
        if "Traceback (most recent call last)" in text:
            return f"a Python traceback instead of a clean error: {p.stderr[-800:]}"
    elif case.expect == "ok":
        if p.returncode != 0:
            return f"status {p.returncode}: {p.stderr[-800:]}"
    if case.message and not re.search(case.message, text):
        return f"expected /{case.message}/ in the output, got: {text[-600:]}"
    return None


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice", type=int, default=1, help="run every Nth case")
    ap.add_argument("-k", default="", help="only cases whose id contains this")
    ap.add_argument("-j", type=int, default=2, help="processes at once")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args(argv)
    cases = [c for c in all_cases() if args.k in c.id][::args.slice]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.j) as pool:
        results = list(pool.map(run_case, cases))
    failures = [(c, r) for c, r in zip(cases, results) if r]
    by_surface: dict[str, int] = {}
    for c in cases:
        by_surface[c.surface] = by_surface.get(c.surface, 0) + 1
    for c, r in zip(cases, results):
        if r or args.v:
            print(f"{'FAIL' if r else 'ok  '} {c.id}" + (f"\n     {r}" if r else ""))
    print(f"corpus: {len(cases)} cases ({', '.join(f'{k} {v}' for k, v in by_surface.items())}) "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"{len(cases) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

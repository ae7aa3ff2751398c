"""attncc run: compile an attention function, run it, check it against torch
in float64 and time it.

    attncc run attn.py                       # CPU; example_inputs() or random inputs
    attncc run attn.py --shape 1x8x512x64 --dtype bf16 --iters 20
    attncc run attn.py --sweep block_n=32,64 --sweep num_stages=1,2
    attncc run attn.py --target sm_90a       # on a GPU, where one is present

Inputs: example_inputs() tensors as they are (meta tensors become random
ones: floats ~ N(0, 1), bool masks ~80% True). The reference is the function
itself on float64 copies of the inputs (or, with --reference sdpa, torch's
scaled_dot_product_attention with the scale and mask attncc captured). The
check passes when attncc's largest error is at most twice torch's own (the
function run in the input dtype) plus a small floor; otherwise the exit
status is 1.
"""
from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .errors import CliError
from .inputs import (Examples, attention_facts, describe_options, examples_for, load_program,
                     materialize, options_from_args, parse_option_spec, target_from_args,
                     validated_options)
from .progress import Progress

FLOOR = {"float32": 1e-5, "float16": 1e-3, "bfloat16": 8e-3}


def sweep_configs(base: dict[str, Any], sweeps: list[str]) -> list[dict[str, Any]]:
    axes = []
    seen: dict[str, str] = {}
    for s in sweeps:
        if "=" not in s:
            raise CliError(f"--sweep {s!r}: expected OPTION=V1,V2,...")
        key, vals = s.split("=", 1)
        if key.strip() in seen:
            # Two lists for one option would make every combination take the
            # second list's value.
            raise CliError(f"--sweep {s!r}: {key.strip()} is swept already "
                           f"(--sweep {seen[key.strip()]!r}); give its values in one list")
        seen[key.strip()] = s
        parsed = [parse_option_spec(f"{key}={v}") for v in vals.split(",") if v.strip()]
        if not parsed:
            raise CliError(f"--sweep {s!r}: no values")
        axes.append(parsed)
    configs = []
    for combo in itertools.product(*axes):
        cfg = dict(base)
        for part in combo:
            cfg.update(part)
        configs.append(cfg)
    return configs


def _timeit(fn: Callable[[], Any], iters: int, warmup: int, cuda: bool) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(iters, 1)):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _to64(ex: Examples) -> Examples:
    import torch

    def conv(x):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            return x.double() if x.is_floating_point() else x
        return x
    return Examples(tuple(conv(a) for a in ex.args), {k: conv(v) for k, v in ex.kwargs.items()},
                    ex.origin)


def _nonfinite_inputs(ex_run) -> str:
    """'q: 3 NaN, 1 inf; ...' for the float tensors of the call that hold NaN/Inf."""
    import torch

    parts = []
    named = [(f"argument {i}", a) for i, a in enumerate(ex_run.args)] + list(ex_run.kwargs.items())
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type != "meta":
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            if nan or inf:
                parts.append(f"{name}: {nan} NaN, {inf} inf")
    return "; ".join(parts)


def _max_err(out, ref) -> tuple[float, int]:
    """Largest |out - ref| where ref is finite; the count of non-finite rows skipped."""
    import torch

    out = out.detach().cpu().double()
    finite = torch.isfinite(ref)
    skipped = int((~finite).sum())
    if not finite.any():
        return 0.0, skipped
    diff = (out - ref).abs()[finite]
    if not torch.isfinite(diff).all():
        return math.inf, skipped
    return float(diff.max()) if diff.numel() else 0.0, skipped


def _reference(prog, ex_run: Examples, kind: str, compiled_ir: Callable[[], str]):
    import torch

    ex64 = _to64(ex_run)
    if kind == "function":
        try:
            with torch.no_grad():
                return prog.fn(*ex64.args, **ex64.kwargs), "the function in float64"
        except Exception as e:
            raise CliError(f"the reference (the function on float64 inputs) failed: "
                           f"{type(e).__name__}: {e}; try --reference sdpa") from None
    facts = attention_facts(compiled_ir())
    if facts.bias or facts.mask not in ("none", "causal"):
        raise CliError(f"--reference sdpa covers masks none and causal, not {facts.mask}"
                       f"{' + bias' if facts.bias else ''}; use --reference function")
    ts = ex64.tensors()
    if len(ts) < 3 or tuple(ts[0].shape) != facts.q_shape or tuple(ts[1].shape) != facts.k_shape:
        raise CliError("--reference sdpa needs q, k, v [B, H, L, D] as the first three tensor "
                       "arguments; use --reference function")
    q, k, v = ts[:3]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=facts.mask == "causal", scale=facts.scale,
        enable_gqa=facts.kv_group > 1)
    return ref, "torch SDPA in float64"


def run(args) -> int:
    import torch

    from .. import api
    from ..errors import AttnccError

    prog = load_program(args.source)
    target = target_from_args(args, prog, "cpu")
    base = options_from_args(args, prog)
    validated_options(base)
    configs = sweep_configs(base, args.sweep) if args.sweep else [base]
    for cfg in configs:
        validated_options(cfg)
    cuda = target != "cpu"
    if cuda and not torch.cuda.is_available():
        raise CliError(f"target {target} runs on a CUDA GPU and there is none here "
                       "(torch.cuda.is_available() is False); run on the CPU with --target cpu, "
                       "or inspect the GPU kernel with `attncc compile`/`attncc compare`",
                       code=1)
    if args.iters < 1 or args.warmup < 0:
        raise CliError("--iters must be >= 1 and --warmup >= 0")
    ex = examples_for(prog, args.shape, args.dtype)
    ex_run = materialize(ex, "cuda" if cuda else "cpu", seed=args.seed)
    dtype = str(ex_run.tensors()[0].dtype).removeprefix("torch.")

    results = []
    ref = ref_what = None
    torch_err = None
    torch_s = None
    bar = Progress(len(configs), "run", mode=args.progress) if len(configs) > 1 else None
    for cfg in configs:
        try:
            cf = api.compile(prog.fn, target=target, **{k: v for k, v in cfg.items()
                                                       if v is not None})
            t0 = time.perf_counter()
            with torch.no_grad():
                out = cf(*ex_run.args, **ex_run.kwargs)
            first = time.perf_counter() - t0
        except AttnccError as e:
            raise CliError(f"{prog.where}: {type(e).__name__}: {e}", code=1) from None
        if ref is None:
            def fused_ir(cf=cf):
                return cf.lower(*ex_run.args, **ex_run.kwargs).ir("fused")
            ref, ref_what = _reference(prog, ex_run, args.reference, fused_ir)
            if not isinstance(ref, torch.Tensor):
                raise CliError("the reference did not return a tensor")
            try:
                with torch.no_grad():
                    out_t = prog.fn(*ex_run.args, **ex_run.kwargs)
                torch_err, _ = _max_err(out_t, ref)
                torch_s = _timeit(lambda: prog.fn(*ex_run.args, **ex_run.kwargs), args.iters,
                                  args.warmup, cuda)
            except Exception as e:
                print(f"attncc run: note: the function itself failed in {dtype} "
                      f"({type(e).__name__}: {e}); no torch baseline", file=sys.stderr)
        if tuple(out.shape) != tuple(ref.shape):
            raise CliError(f"attncc's output has shape {tuple(out.shape)}, the reference "
                           f"{tuple(ref.shape)}", code=1)
        err, skipped = _max_err(out, ref)
        with torch.no_grad():
            secs = _timeit(lambda: cf(*ex_run.args, **ex_run.kwargs), args.iters, args.warmup,
                           cuda)
        limit = 2 * (torch_err or 0.0) + FLOOR.get(dtype, 1e-3)
        results.append({"options": {k: v for k, v in cfg.items() if v is not None},
                        "max_abs_err": err, "torch_max_abs_err": torch_err, "limit": limit,
                        "ok": err <= limit, "first_call_s": first, "attncc_s": secs,
                        "torch_s": torch_s, "nonfinite_reference_elements": skipped})
        if bar:
            bar.update(note=describe_options(cfg))
    if bar:
        bar.close()

    print(f"attncc run: {prog.where} on {target}; inputs {ex.describe()}"
          + (" (random values)" if any(t.device.type == "meta" for t in ex.tensors()) else ""))
    print(f"reference: {ref_what}; check: max |attncc - reference| <= 2 x torch's own error "
          f"({dtype}) + {FLOOR.get(dtype, 1e-3):g}")
    if len(results) == 1:
        r = results[0]
        print(f"options: {describe_options(r['options'])}")
        te = "n/a" if torch_err is None else f"{torch_err:.3e}"
        print(f"max abs error: attncc {r['max_abs_err']:.3e}   torch {dtype} {te}   "
              f"{'ok' if r['ok'] else 'MISMATCH'}")
        line = f"time (median of {args.iters}): attncc {r['attncc_s'] * 1e3:.3f} ms"
        if torch_s:
            line += f"   torch {torch_s * 1e3:.3f} ms   speedup {torch_s / r['attncc_s']:.2f}x"
        print(line + f"   (first call incl. compile {r['first_call_s']:.2f} s)")
    else:
        heads = ["options", "max abs err", "ok", "attncc ms", "torch ms", "speedup"]
        rows = []
        for r in results:
            rows.append([describe_options(r["options"]), f"{r['max_abs_err']:.3e}",
                         "ok" if r["ok"] else "MISMATCH", f"{r['attncc_s'] * 1e3:.3f}",
                         "n/a" if not torch_s else f"{torch_s * 1e3:.3f}",
                         "n/a" if not torch_s else f"{torch_s / r['attncc_s']:.2f}x"])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    bad_inputs = _nonfinite_inputs(ex_run)
    if bad_inputs:
        # NaN/Inf inputs propagate (as in torch's SDPA): those outputs are NaN,
        # not "fully masked"; say what was and was not compared.
        print(f"note: the inputs hold non-finite values ({bad_inputs}); attncc's output has "
              f"{int((~torch.isfinite(out)).sum())} non-finite elements, the reference "
              f"{results[0]['nonfinite_reference_elements']}; only elements where the reference "
              "is finite are compared (docs/numerics.md)")
    elif results and any(r["nonfinite_reference_elements"] for r in results):
        print(f"note: {results[0]['nonfinite_reference_elements']} reference elements are not "
              "finite (fully masked rows: torch gives NaN, attncc zeros); they are not compared")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps({"function": prog.where, "target": target,
                                                   "inputs": ex.describe(), "reference": ref_what,
                                                   "results": results}, indent=2))
        except OSError as e:
            raise CliError(f"cannot write {args.json}: {e.strerror}") from None
    return 0 if all(r["ok"] for r in results) else 1

"""Argument parsing and dispatch of the `attncc` command line."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .errors import CliError
from .inputs import OPTION_FLAGS, TARGETS, WORD_OPTIONS

DESCRIPTION = """\
attncc: an MLIR attention compiler for Python users.

Each command takes a Python file with an attention function written in plain
PyTorch, FILE.py[:FUNCTION], and its example inputs: an example_inputs()
function in the file (returning the tensors, CPU or device="meta"), or
--shape/--dtype flags.
"""

EPILOG = "Run `attncc COMMAND --help` for a command's options; docs/tutorial.md walks through them."


def _source_args(p: argparse.ArgumentParser, *, target_default: str, many: bool = False) -> None:
    g = p.add_argument_group("input")
    if many:
        g.add_argument("sources", nargs="+", metavar="FILE.py[:FUNCTION]",
                       help="the function to compile (as for `attncc compile`); a second "
                            "FILE.py[:FUNCTION] is compiled for build B")
    else:
        g.add_argument("source", metavar="FILE.py[:FUNCTION]",
                       help="the Python file and (optionally) the function to compile; without "
                            "FUNCTION, the file's only function, or the one named `attention`")
    g.add_argument("--shape", action="append", default=[], metavar="[NAME=]D0xD1x...",
                   help="shape of a tensor argument (repeatable), e.g. q=1x8x1024x64; an "
                        "unnamed shape is every tensor argument's. Overrides example_inputs()")
    g.add_argument("--dtype", action="append", default=[], metavar="[NAME=]DTYPE",
                   help="dtype of the --shape tensors: fp16 (default), bf16, fp32, or per "
                        "argument, e.g. mask=bool")
    g.add_argument("--target", choices=TARGETS, default=None,
                   help=f"cpu, sm_80 (Ampere) or sm_90a (Hopper); default {target_default} "
                        "(or the target of an @attncc.compile decorator)")
    o = p.add_argument_group("compile options (default: attncc's, or the decorator's)")
    for name in OPTION_FLAGS:
        helps = {"block_m": "query rows per block (power of two, 16..256)",
                 "block_n": "keys per KV block (power of two, 16..256)",
                 "num_stages": "K/V buffers in flight in the software pipeline (1..4)",
                 "unroll": "unroll factor of the KV loop (1, 2, 4, 8)",
                 "num_warps": "GPU warps per block (block_m = 16 * num_warps)",
                 "num_threads": "CPU threads for the grid",
                 "mma": "GPU tensor-core instructions: wgmma (sm_90a), mma_sync, or auto "
                        "(wgmma on sm_90a with whole warpgroups)",
                 "tma": "sm_90a wgmma kernel: load tiles with TMA (on, the default) or cp.async (off)",
                 "cpu": "CPU ISA class to generate code for: host (default) or a class to force "
                        "(x86-64-v3 = AVX2, x86-64-v4 = AVX-512, aarch64 = NEON)",
                 "input_precision": "f32 inputs: tf32 (GPU default), tf32x3 (3xTF32, about fp32 "
                                    "accuracy) or ieee (CPU; the CPU computes fp32 whatever is "
                                    "asked); also passed to Triton in comparisons",
                 "llvm_opt": "LLVM IR passes of the CPU JIT: light (sroa, early-cse, instcombine, "
                             "simplifycfg) or LLVM's O1/O2/O3 (default: light for decode "
                             "kernels, O3 otherwise)"}
        if name in WORD_OPTIONS:
            o.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                           choices=WORD_OPTIONS[name], help=helps[name])
            continue
        o.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None,
                       metavar="N", help=helps[name])


def _progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("auto", "always", "never"), default=None,
                   help="progress bar on stderr: auto (on a terminal), always, never")


def build_parser() -> argparse.ArgumentParser:
    from . import cmd_compare, cmd_compile, cmd_explain, cmd_run

    parser = argparse.ArgumentParser(prog="attncc", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"attncc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("compile", help="compile a function; write the IR of a stage, PTX or cubin",
                       description=cmd_compile.__doc__, formatter_class=fmt)
    _source_args(p, target_default="cpu")
    p.add_argument("--emit", default=None, metavar="STAGE",
                   help="what to write: a stage's IR (graph, fused, tiled, pipelined, then llvm "
                        "on the CPU or gpu, ptx, cubin on GPU targets; ptx is the PTX text, "
                        "cubin the binary), 'sass' (disassembled cubin), 'schedule' (the "
                        "software-pipelined schedule as text, or SVG when -o ends in .svg), or "
                        "'metadata' (JSON). Default: the last stage")
    p.add_argument("-o", "--output", default="-", metavar="OUT",
                   help="output file ('-' = stdout, the default; a cubin needs a file)")
    p.set_defaults(func=cmd_compile.run)

    p = sub.add_parser("run", help="compile, run on CPU (or GPU), check against torch, time it",
                       description=cmd_run.__doc__, formatter_class=fmt)
    _source_args(p, target_default="cpu")
    p.add_argument("--reference", choices=("function", "sdpa"), default="function",
                   help="the float64 reference: the function itself on float64 inputs "
                        "(default), or torch's scaled_dot_product_attention with the captured "
                        "scale and mask (none/causal)")
    p.add_argument("--iters", type=int, default=10, help="timed runs (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--sweep", action="append", default=[], metavar="OPTION=V1,V2,...",
                   help="run every combination of these option values (repeatable), e.g. "
                        "--sweep block_n=32,64 --sweep num_stages=1,2")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    _progress_arg(p)
    p.set_defaults(func=cmd_run.run)

    p = sub.add_parser("compare", help="compare two (or more) compilations side by side",
                       description=cmd_compare.__doc__, formatter_class=fmt)
    _source_args(p, target_default="sm_90a", many=True)
    p.add_argument("--a", default=None, metavar="SPEC",
                   help="build A: option overrides ('num_stages=1,block_m=128'), or 'triton' / "
                        "'triton:num_stages=3' for the Triton reference")
    p.add_argument("--b", default=None, metavar="SPEC", help="build B, like --a")
    p.add_argument("--config", action="append", default=[], metavar="SPEC",
                   help="more builds C, D, ... (repeatable)")
    p.add_argument("--sweep", action="append", default=[], metavar="OPTION=V1,V2,...",
                   help="one build per combination of option values (repeatable)")
    p.add_argument("--diff", nargs="?", const="", default=None, metavar="STAGE",
                   help="print the unified diff of STAGE between A and B (default stage: ptx "
                        "on GPU targets, pipelined on the CPU)")
    p.add_argument("--context", type=int, default=3, help="diff context lines (default 3)")
    p.add_argument("--html", metavar="OUT", help="write a self-contained HTML report")
    p.add_argument("--json", metavar="OUT", help="write the numbers as JSON")
    p.add_argument("--kv-blocks", type=int, default=None, metavar="N",
                   help="KV blocks drawn in the schedule pictures (default: the kernel's)")
    _progress_arg(p)
    p.set_defaults(func=cmd_compare.run)

    p = sub.add_parser("explain", help="the pass pipeline with per-pass timing and the IR after "
                                       "each pass", description=cmd_explain.__doc__,
                       formatter_class=fmt)
    _source_args(p, target_default="cpu")
    p.add_argument("--pass", dest="passes", action="append", default=[], metavar="NAME",
                   help="print the IR only after these passes (repeatable), e.g. attn-pipeline")
    p.add_argument("--stage", dest="stages", action="append", default=[], metavar="STAGE",
                   help="print the IR only after passes of these stages (repeatable)")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage")
    p.add_argument("--no-ir", action="store_true", help="only the pass table")
    p.add_argument("--after-change", action="store_true",
                   help="print the IR only after passes that changed it")
    p.add_argument("--schedule", action="store_true",
                   help="also print the software-pipelined schedule read from the IR")
    p.add_argument("--mlir-timing", action="store_true",
                   help="also print MLIR's own timing report of each stage "
                        "(PassManager.enable_timing)")
    p.add_argument("-o", "--output", default="-", metavar="OUT", help="output file (default stdout)")
    p.set_defaults(func=cmd_explain.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `attncc` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    who = f"attncc {args.command}"
    from ..errors import AttnccError

    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"{who}: error: {e}", file=sys.stderr)
        return e.code
    except AttnccError as e:
        print(f"{who}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # a bug of ours: one line, the traceback on request
        if os.environ.get("ATTNCC_TRACEBACK"):
            raise
        print(f"{who}: internal error: {type(e).__name__}: {e} (set ATTNCC_TRACEBACK=1 for "
              "the traceback)", file=sys.stderr)
        return 3

"""The `attncc` command line: compile, run, compare and explain attention
kernels written as Python functions (see docs/tutorial.md).

    attncc compile FILE.py[:FUNCTION] --target sm_90a --emit ptx -o kernel.ptx
    attncc run FILE.py --target cpu
    attncc compare FILE.py --target sm_90a --a "num_stages=1" --b "num_stages=3" --html r.html
    attncc explain FILE.py --pass attn-pipeline
"""
from .main import build_parser, main

__all__ = ["build_parser", "main"]

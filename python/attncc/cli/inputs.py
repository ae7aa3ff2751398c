"""What the command line compiles: a Python function from a file, its example
inputs, the target and the compile options.

    FILE.py[:FUNCTION]     the function; without FUNCTION the file's only
                           function (or the one named `attention`, or the one
                           decorated with @attncc.compile)
    example_inputs()       a function in the file returning the example
                           tensors (a tuple/list of positional arguments, or a
                           dict of keyword arguments; CPU or device="meta")
    --shape q=1x8x1024x64  or the shapes as flags (an unnamed --shape 1x8x128x64
    --dtype fp16           is every tensor argument's), with dtypes
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from mlir import ir

from ..targets import TARGETS
from ..targets.cpu import CPU_CHOICES, LLVM_OPT
from ..options import INPUT_PRECISIONS
from ..targets.gpu import chip_for_target
from .errors import CliError


DTYPES = {"fp16": "float16", "f16": "float16", "float16": "float16", "half": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp32": "float32", "f32": "float32", "float32": "float32", "float": "float32",
          "bool": "bool", "int64": "int64", "i64": "int64", "int32": "int32", "i32": "int32"}

# Compile options the command line takes as flags (and in --a/--b specs).
OPTION_FLAGS = ("block_m", "block_n", "num_stages", "unroll", "num_warps", "num_threads", "mma",
                "tma", "cpu", "input_precision", "llvm_opt")
# Options whose values are words, with the words they take.
WORD_OPTIONS = {"mma": ("auto", "wgmma", "mma_sync"), "tma": ("on", "off"), "cpu": CPU_CHOICES,
                "input_precision": INPUT_PRECISIONS, "llvm_opt": LLVM_OPT}
# ... and the option value of each word, where it is not the word itself.
_WORD_VALUES = {"tma": {"on": True, "off": False}}


def option_value(name: str, word: str) -> Any:
    return _WORD_VALUES.get(name, {}).get(word, word)


@dataclass
class Program:
    """A function loaded from a file."""

    path: Path
    name: str
    fn: Callable                         # the plain Python function (or nn.Module)
    module: ModuleType
    decorated_target: Optional[str] = None          # @attncc.compile(target=...)
    decorated_options: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.name}"


# ----------------------------------------------------------------------------- files

def split_source(source: str) -> tuple[Path, Optional[str]]:
    """'dir/file.py:fn' -> (Path('dir/file.py'), 'fn')."""
    path, fn = source, None
    if ":" in source and not Path(source).exists():
        head, tail = source.rsplit(":", 1)
        if tail.isidentifier():
            path, fn = head, tail
    return Path(path), fn


def _user_frame(exc: BaseException, path: Path) -> str:
    """' (file.py, line N)' of the innermost frame in the user's file."""
    where = ""
    for fs in traceback.extract_tb(exc.__traceback__):
        try:
            if Path(fs.filename).resolve() == path.resolve():
                where = f" ({path.name}, line {fs.lineno})"
        except OSError:
            pass
    return where


def load_module(path: Path) -> ModuleType:
    if not path.exists():
        raise CliError(f"no such file: {path}")
    if not path.is_file():
        raise CliError(f"not a file: {path}")
    if path.suffix != ".py":
        raise CliError(f"{path} is not a Python file (expected FILE.py[:FUNCTION])")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_attncc_input_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)            # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise CliError(f"{path}: syntax error, line {e.lineno}: {e.msg}") from None
    except SystemExit:
        sys.modules.pop(name, None)
        raise CliError(f"{path} called exit() while being imported; put script code under "
                       "`if __name__ == \"__main__\":`") from None
    except Exception as e:
        sys.modules.pop(name, None)
        raise CliError(f"importing {path} failed{_user_frame(e, path)}: "
                       f"{type(e).__name__}: {e}") from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


def _candidates(module: ModuleType) -> dict[str, Any]:
    from ..api import CompiledFunction

    out = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or name == "example_inputs" or name.startswith("example_inputs"):
            continue
        if isinstance(obj, CompiledFunction):
            fn = obj.fn
        elif inspect.isfunction(obj):
            fn = obj
        else:
            continue
        if getattr(fn, "__module__", None) == module.__name__:
            out[name] = obj
    return out


def load_program(source: str) -> Program:
    """Loads FILE.py[:FUNCTION]."""
    from ..api import CompiledFunction

    path, fn_name = split_source(source)
    module = load_module(path)
    cands = _candidates(module)
    if fn_name is not None:
        obj = getattr(module, fn_name, None)
        if obj is None:
            listing = ", ".join(sorted(cands)) or "none"
            raise CliError(f"{path} has no function {fn_name!r} (functions defined there: "
                           f"{listing})")
        if not callable(obj):
            raise CliError(f"{path}:{fn_name} is a {type(obj).__name__}, not a function")
    else:
        if not cands:
            raise CliError(f"{path} defines no function to compile (write the attention as a "
                           "function of torch tensors)")
        if len(cands) == 1:
            fn_name = next(iter(cands))
        else:
            decorated = [n for n, o in cands.items() if isinstance(o, CompiledFunction)]
            if "attention" in cands:
                fn_name = "attention"
            elif len(decorated) == 1:
                fn_name = decorated[0]
            else:
                raise CliError(f"{path} defines several functions ({', '.join(sorted(cands))}); "
                               f"name one: {path}:FUNCTION")
        obj = cands[fn_name]
    prog = Program(path=path, name=fn_name, fn=obj, module=module)
    if isinstance(obj, CompiledFunction):
        prog.fn = obj.fn
        prog.decorated_target = obj.target
        prog.decorated_options = {k: v for k, v in obj.options.as_dict().items()
                                  if v != _default_options().get(k)}
    return prog


def _default_options() -> dict[str, Any]:
    from ..options import CompileOptions

    return CompileOptions().as_dict()


# ----------------------------------------------------------------------------- inputs

def parse_shape(text: str) -> tuple[Optional[str], tuple[int, ...]]:
    """'q=1x8x1024x64' -> ('q', (1, 8, 1024, 64)); '1x8x64x64' -> (None, ...)."""
    name = None
    dims = text
    if "=" in text:
        name, dims = text.split("=", 1)
        name = name.strip()
        if not name.isidentifier():
            raise CliError(f"--shape {text!r}: {name!r} is not an argument name")
    # Every separator stands between two sizes: '1x2xx64' is an error, not (1, 2, 64).
    parts = [p.strip() for p in re.split(r"[x,]", dims.strip())]
    if any(not p for p in parts):
        raise CliError(f"--shape {text!r}: an empty size (two separators in a row, or one at "
                       "either end); expected NAME=D0xD1x... with integer sizes")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise CliError(f"--shape {text!r}: expected NAME=D0xD1x... with integer sizes") from None
    if not shape or any(d < 0 for d in shape):
        raise CliError(f"--shape {text!r}: expected NAME=D0xD1x... with sizes >= 0")
    return name, shape


def parse_dtype(text: str) -> tuple[Optional[str], str]:
    name, dt = (text.split("=", 1) if "=" in text else (None, text))
    key = dt.strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise CliError(f"--dtype {text!r}: unknown dtype; expected one of "
                       "fp16, bf16, fp32, bool, int32, int64")
    return (name.strip() if name else None), DTYPES[key]


@dataclass
class Examples:
    args: tuple
    kwargs: dict
    origin: str            # "example_inputs()" or "--shape"

    def tensors(self):
        import torch

        return [t for t in (*self.args, *self.kwargs.values()) if isinstance(t, torch.Tensor)]

    def describe(self) -> str:
        import torch

        def one(t):
            if isinstance(t, torch.Tensor):
                dt = str(t.dtype).removeprefix("torch.")
                return f"{'x'.join(map(str, t.shape))} {dt}"
            return repr(t)
        items = [one(a) for a in self.args] + [f"{k}={one(v)}" for k, v in self.kwargs.items()]
        return ", ".join(items)


def examples_from_flags(prog: Program, shapes: list[str], dtypes: list[str]) -> Examples:
    import torch

    named: dict[str, tuple[int, ...]] = {}
    default_shape = None
    for s in shapes:
        name, shape = parse_shape(s)
        if name is None:
            default_shape = shape
        else:
            named[name] = shape
    named_dt: dict[str, str] = {}
    default_dt = "float16"
    for d in dtypes:
        name, dt = parse_dtype(d)
        if name is None:
            default_dt = dt
        else:
            named_dt[name] = dt
    try:
        params = list(inspect.signature(prog.fn).parameters.values())
    except (TypeError, ValueError):
        raise CliError(f"cannot read the signature of {prog.where}") from None
    names = [p.name for p in params]
    for n in list(named) + list(named_dt):
        if n not in names:
            raise CliError(f"{prog.where} has no argument {n!r} (arguments: {', '.join(names)})")
    args, kwargs = [], {}
    positional = True
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        shape = named.get(p.name)
        if shape is None and p.default is inspect.Parameter.empty:
            shape = default_shape
        if shape is None:
            if p.default is inspect.Parameter.empty:
                raise CliError(f"no shape for argument {p.name!r} of {prog.where}: give "
                               f"--shape {p.name}=B x H x L x D (e.g. {p.name}=1x8x128x64) or "
                               "an unnamed --shape for every tensor")
            positional = False          # later arguments go by keyword
            continue
        dt = getattr(torch, named_dt.get(p.name, default_dt))
        t = torch.empty(shape, dtype=dt, device="meta")
        if positional and p.kind != p.KEYWORD_ONLY:
            args.append(t)
        else:
            kwargs[p.name] = t
    return Examples(tuple(args), kwargs, "--shape")


def examples_from_file(prog: Program) -> Optional[Examples]:
    import torch

    fn = getattr(prog.module, "example_inputs", None)
    if fn is None:
        return None
    if not callable(fn):
        raise CliError(f"{prog.path}: example_inputs is not a function")
    try:
        got = fn()
    except Exception as e:
        raise CliError(f"{prog.path}: example_inputs() failed{_user_frame(e, prog.path)}: "
                       f"{type(e).__name__}: {e}") from None
    if isinstance(got, torch.Tensor):
        got = (got,)
    if isinstance(got, dict):
        return Examples((), dict(got), "example_inputs()")
    if isinstance(got, (tuple, list)):
        return Examples(tuple(got), {}, "example_inputs()")
    raise CliError(f"{prog.path}: example_inputs() returned a {type(got).__name__}; return "
                   "a tuple or list of the arguments (or a dict of keyword arguments)")


def examples_for(prog: Program, shapes: list[str], dtypes: list[str]) -> Examples:
    """Flags win over example_inputs(); one of them is needed."""
    if shapes:
        return examples_from_flags(prog, shapes, dtypes)
    if dtypes:
        raise CliError("--dtype needs --shape (the dtypes of example_inputs() are its own)")
    ex = examples_from_file(prog)
    if ex is None:
        raise CliError(f"no example inputs for {prog.where}: define example_inputs() in "
                       f"{prog.path.name} (returning the tensors) or give --shape "
                       "q=1x8x128x64 --shape k=... --shape v=...")
    if not ex.tensors():
        raise CliError(f"{prog.path}: example_inputs() returned no tensors")
    return ex


def for_lowering(ex: Examples, target: str) -> Examples:
    """Examples the target's lowering accepts: GPU targets take meta (or CUDA)
    tensors, so CPU tensors become meta tensors of the same shape and dtype."""
    import torch

    if target == "cpu":
        return ex

    def conv(x):
        if isinstance(x, torch.Tensor) and x.device.type == "cpu":
            return x.to("meta")
        return x
    return Examples(tuple(conv(a) for a in ex.args), {k: conv(v) for k, v in ex.kwargs.items()},
                    ex.origin)


def materialize(ex: Examples, device: str, seed: int = 0) -> Examples:
    """Real tensors for a run: meta tensors become random ones (floats ~ N(0, 1),
    bool masks ~80% True, integers 0); real tensors are moved to `device`."""
    import torch

    gen = torch.Generator().manual_seed(seed)

    def conv(x):
        if not isinstance(x, torch.Tensor):
            return x
        if x.device.type != "meta":
            return x.to(device)
        if x.is_floating_point():
            t = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.dtype)
        elif x.dtype == torch.bool:
            t = torch.rand(x.shape, generator=gen) < 0.8
        else:
            t = torch.zeros(x.shape, dtype=x.dtype)
        return t.to(device)
    return Examples(tuple(conv(a) for a in ex.args), {k: conv(v) for k, v in ex.kwargs.items()},
                    ex.origin)


# ----------------------------------------------------------------------------- options

def parse_option_spec(text: str) -> dict[str, Any]:
    """'num_stages=3, block-m=128' -> {'num_stages': 3, 'block_m': 128}."""
    out: dict[str, Any] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        if "=" not in item:
            raise CliError(f"option {item!r} in {text!r}: expected NAME=VALUE "
                           f"(names: {', '.join(OPTION_FLAGS)})")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in OPTION_FLAGS:
            raise CliError(f"unknown option {k!r} in {text!r}; expected one of "
                           f"{', '.join(OPTION_FLAGS)}")
        if v.strip().lower() in ("none", "auto", ""):
            out[k] = None
            continue
        if k in WORD_OPTIONS:
            word = v.strip().lower()
            if k != "cpu":   # ISA class names have dashes: x86-64-v3
                word = word.replace("-", "_")
            words = {w.lower(): w for w in WORD_OPTIONS[k]}   # llvm_opt's O1..O3
            if word not in words:
                raise CliError(f"option {k}={v!r}: expected one of {', '.join(WORD_OPTIONS[k])}")
            out[k] = option_value(k, words[word])
            continue
        try:
            out[k] = int(v)
        except ValueError:
            raise CliError(f"option {k}={v!r}: expected an integer") from None
    return out


def options_from_args(args, prog: Program) -> dict[str, Any]:
    """The decorator's options, overridden by the flags given."""
    opts = dict(prog.decorated_options)
    for k in OPTION_FLAGS:
        v = getattr(args, k, None)
        if v is not None:
            opts[k] = option_value(k, v) if k in WORD_OPTIONS else v
    return opts


def target_from_args(args, prog: Program, default: str = "cpu") -> str:
    t = getattr(args, "target", None) or prog.decorated_target or default
    if t == "cuda":
        t = chip_for_target("cuda")
    if t not in TARGETS:
        raise CliError(f"unknown target {t!r}; expected one of {', '.join(TARGETS)}")
    return t


def validated_options(opts: dict[str, Any]):
    from ..options import CompileOptions, OptionError

    try:
        return CompileOptions.from_kwargs({k: v for k, v in opts.items() if v is not None})
    except OptionError as e:
        raise CliError(str(e)) from None


def describe_options(opts: dict[str, Any]) -> str:
    given = {k: v for k, v in opts.items() if v is not None}
    return ", ".join(f"{k}={v}" for k, v in given.items()) or "defaults"


# ----------------------------------------------------------------------------- compiling

def lower(prog: Program, ex: Examples, target: str, opts: dict[str, Any],
          stop_after: Optional[str] = None):
    """attncc.compile(fn, target, **opts).lower(*examples) with the CLI's errors."""
    from .. import api
    from ..errors import AttnccError

    validated_options(opts)
    lex = for_lowering(ex, target)
    try:
        cf = api.compile(prog.fn, target=target, stop_after=stop_after,
                         **{k: v for k, v in opts.items() if v is not None})
        return cf.lower(*lex.args, **lex.kwargs)
    except AttnccError as e:
        raise CliError(f"{prog.where}: {type(e).__name__}: {e}", code=1) from None


# ----------------------------------------------------------------------------- facts

@dataclass(frozen=True)
class AttentionFacts:
    """The fused attn.attention op of a compilation."""

    q_shape: tuple
    k_shape: tuple
    dtype: str
    mask: str
    scale: float
    kv_group: int
    window: Optional[int]
    bias: bool

    def describe(self) -> str:
        q = "x".join("?" if d is None else str(d) for d in self.q_shape)
        k = "x".join("?" if d is None else str(d) for d in self.k_shape)
        extra = f" window {self.window}" if self.window else ""
        bias = " + bias" if self.bias and self.mask != "bias" else ""
        group = f", GQA group {self.kv_group}" if self.kv_group > 1 else ""
        return f"q {q}, k/v {k} {self.dtype}, mask {self.mask}{extra}{bias}{group}"


def attention_facts(fused_ir: str) -> AttentionFacts:
    """The facts of the attn.attention op of stage 'fused', read through the
    bindings (its attributes and operand types)."""
    from ..context import mlir_context

    with mlir_context():
        module = ir.Module.parse(fused_ir)
        ops = [op.operation for fn in module.body.operations
               for op in fn.operation.regions[0].blocks[0].operations
               if op.operation.name == "attn.attention"]
        if not ops:
            raise CliError("no attn.attention in the fused IR", code=1)
        op = ops[0]
        attrs = {name: op.attributes[name] for name in op.attributes}
        q, k = (ir.RankedTensorType(op.operands[i].type) for i in (0, 1))

        def dims(t):
            return tuple(None if ir.ShapedType.is_dynamic_size(d) else d for d in t.shape)

        window = int(ir.IntegerAttr(attrs["window"]).value) if "window" in attrs else None
        return AttentionFacts(dims(q), dims(k), str(q.element_type),
                              _enum_word(attrs["mask"]), float(ir.FloatAttr(attrs["scale"]).value),
                              int(ir.IntegerAttr(attrs["kv_group"]).value), window or None,
                              len(op.operands) > 3)


def _enum_word(attr) -> str:
    """The mask kind (an I32 enum attribute) by name, e.g. "causal"."""
    from ..dialects import attn as attn_d

    return attn_d.MaskKind(ir.IntegerAttr(attr).value).name

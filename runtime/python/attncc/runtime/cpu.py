"""Runs CPU kernels: the LLVM-dialect module of stage 'llvm', JIT-compiled by
MLIR's ExecutionEngine with the LLVM passes the compiler chose (the native
runtime's `jit_engine`, runtime/KernelJit.cpp; or its object code from the
kernel cache, linked by the native runtime's ORC loader), called on torch
tensors without copying them.

    kernel = CpuKernel(llvm_module, "attention")    # module after stage 'llvm'
    out = kernel(q, k, v)                           # allocates the output
    kernel.run(q, k, v, out)                        # or writes into `out`
    data = CpuKernel(m, "attention", keep_object=True).object
    same = CpuKernel.from_object(data, "attention", arg_types, externals)

The kernel function takes memrefs. Its argument types (shapes, layouts and
element types) are recorded by attn-lower-to-cpu as `attn.arg_types`, since the
LLVM conversion erases them; every call checks its tensors against them and
passes each one as a memref descriptor of `tensor.data_ptr()`, its sizes and
strides, both in one native call (the extension's `Invoker`: no numpy, which
has no bf16, and no ctypes per call). The call goes through the C interface
(`_mlir_ciface_<name>`, requested by `llvm-request-c-wrappers` in the 'llvm'
stage) and releases the GIL while the kernel runs.

Threads: a kernel compiled for several threads (attn-parallel-to-omp) runs on
a team of torch's own OpenMP threads (the native runtime's `attnccRunOnTeam`, entry points from
runtime/openmp.py), each thread taking its share of the grid points; where no
OpenMP runtime is loaded, on the thread pool of MLIR's async runtime
(`libmlir_async_runtime.so` from the mlir wheel) instead. One thread: a serial
grid, no runtime at all. See docs/cpu-backend.md.
"""
from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from mlir import ir
from mlir.execution_engine import ExecutionEngine

from .._attncc import Invoker, LoadedObject, jit_engine
from . import openmp
from ..errors import AttnccError, CompileError

_DYN = ir.ShapedType.get_dynamic_size()
_DYN_STRIDE = ir.ShapedType.get_dynamic_stride_or_offset()

_TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
                 "f64": torch.float64, "i32": torch.int32,
                 "f8E4M3FN": torch.float8_e4m3fn, "f8E5M2": torch.float8_e5m2}

# Engines whose module uses the async runtime are kept for the life of the
# process: a worker thread of the process-wide async runtime may still be
# returning through an engine's code after the kernel call has returned.
_PINNED_ENGINES: list[ExecutionEngine] = []


@functools.lru_cache(maxsize=None)
def _runtime_library(name: str) -> ctypes.CDLL:
    """A runtime library of the mlir wheel, loaded once with RTLD_LOCAL.

    Not through ExecutionEngine(shared_libs=...): that dlopens with
    RTLD_GLOBAL, which puts the wheel's libLLVM.so (a dependency of these
    libraries) into the global symbol scope; a library carrying its own static
    LLVM loaded after that (Triton's libtriton.so, which torch.export /
    torch.compile import) then binds to it and aborts the process with
    "CommandLine Error: Option ... registered more than once". Instead the
    kernel's external functions are looked up here and registered by address."""
    return ctypes.CDLL(mlir_shared_library(name), mode=os.RTLD_LOCAL)


def _external_functions(module: ir.Module) -> list[str]:
    """Names of the functions the LLVM-dialect module declares but does not define."""
    names = []
    for op in module.body.operations:
        o = op.operation
        if o.name == "llvm.func" and len(o.regions[0].blocks) == 0:
            names.append(ir.StringAttr(o.attributes["sym_name"]).value)
    return names


_PROCESS = ctypes.CDLL(None)   # the symbols global in this process (libc, libm)


def _runtime_symbols(externals: Sequence[str], uses_async: bool) -> dict[str, int]:
    """Addresses of the kernel's external functions that MLIR's runtime
    libraries define, and GOMP_barrier (attn-parallel-to-omp) from torch's
    OpenMP runtime; anything else (libc, libm) resolves from the process."""
    libs = ["libmlir_async_runtime.so"] if uses_async else []
    libs.append("libmlir_c_runner_utils.so")
    found: dict[str, int] = {}
    for fn in externals:
        if hasattr(_PROCESS, fn):
            # libc / libm (malloc, free, ...): the JIT resolves them from the
            # process; looking them up in a runtime library would load it for
            # nothing (libmlir_c_runner_utils.so: ~40 ms on a first call).
            continue
        if fn == "GOMP_barrier":
            omp = openmp.runtime()
            if omp is None:
                raise CompileError("the kernel runs on an OpenMP team but no OpenMP runtime "
                                   "is loaded in this process")
            found[fn] = omp.barrier
            continue
        for lib in libs:
            addr = getattr(_runtime_library(lib), fn, None)
            if addr is not None:
                found[fn] = ctypes.cast(addr, ctypes.c_void_p).value
                break
    return found


class KernelArgumentError(AttnccError, ValueError):
    """A tensor does not match the kernel's argument (dtype, shape, layout, device)."""


@dataclass(frozen=True)
class MemRefSpec:
    """One memref argument: static sizes/strides (None where dynamic), element type."""

    shape: tuple[Optional[int], ...]
    strides: tuple[Optional[int], ...]
    offset: Optional[int]
    dtype: torch.dtype
    type_str: str

    @classmethod
    def from_type(cls, t: ir.Type) -> "MemRefSpec":
        if not isinstance(t.maybe_downcast(), ir.MemRefType):
            raise CompileError(f"kernel argument of type {t}: CPU kernels take memrefs only")
        mt = ir.MemRefType(t)
        et = str(mt.element_type)
        if et not in _TORCH_DTYPES:
            raise CompileError(f"kernel argument {mt}: element type {et} has no torch dtype here")
        strides, offset = mt.get_strides_and_offset()
        return cls(tuple(None if d == _DYN else d for d in mt.shape),
                   tuple(None if s == _DYN_STRIDE else s for s in strides),
                   None if offset == _DYN_STRIDE else offset, _TORCH_DTYPES[et], str(mt))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def mismatch(self, t: torch.Tensor) -> Optional[str]:
        """Why `t` cannot be passed as this memref as it is, or None. (On
        every kernel call: only the static sizes and strides are compared.)"""
        if t.dtype != self.dtype:
            return f"dtype {t.dtype}, expected {self.dtype}"
        shape = t.shape
        if len(shape) != len(self.shape):
            return f"rank {t.dim()}, expected {self.rank}"
        for d, want in self._static_sizes:
            if shape[d] != want:
                return f"shape {tuple(shape)}, expected {self._shape_str()}"
        if self._static_strides:
            strides = t.stride()
            for d, want in self._static_strides:
                if strides[d] != want and shape[d] != 1:
                    return f"strides {strides}, expected {self._strides_str()}"
        return None

    @functools.cached_property
    def _static_sizes(self) -> tuple[tuple[int, int], ...]:
        return tuple((d, s) for d, s in enumerate(self.shape) if s is not None)

    @functools.cached_property
    def _static_strides(self) -> tuple[tuple[int, int], ...]:
        return tuple((d, s) for d, s in enumerate(self.strides) if s is not None)

    def _shape_str(self) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ")"

    def _strides_str(self) -> str:
        return "(" + ", ".join("?" if s is None else str(s) for s in self.strides) + ")"


def mlir_shared_library(name: str) -> str:
    """A runtime library shipped with the mlir wheel (mlir/lib/<name>)."""
    import mlir

    for base in mlir.__path__:
        cand = Path(base) / "lib" / name
        if cand.is_file():
            return str(cand)
    raise FileNotFoundError(f"{name} not found in the mlir wheel ({list(mlir.__path__)})")


def _find_kernel(module: ir.Module, name: str) -> tuple[ir.Operation, list[MemRefSpec]]:
    for op in module.body.operations:
        op = op.operation
        if op.name not in ("llvm.func", "func.func"):
            continue
        if ir.StringAttr(op.attributes["sym_name"]).value != name:
            continue
        if "attn.arg_types" not in op.attributes:
            raise CompileError(f"function {name!r} has no attn.arg_types: was it lowered by "
                               "attn-lower-to-cpu (stage 'llvm')?")
        types = ir.ArrayAttr(op.attributes["attn.arg_types"])
        return op, [ir.TypeAttr(a).value for a in types]
    raise CompileError(f"no kernel function {name!r} in the module")


def _arguments(types: Sequence[ir.Type]) -> tuple[list[MemRefSpec], int]:
    """The memref arguments, then the count of trailing `index` arguments:
    2 (thread number, team size) for a kernel made by attn-parallel-to-omp."""
    n = len(types)
    while n and str(types[n - 1]) == "index":
        n -= 1
    team = len(types) - n
    if team not in (0, 2):
        raise CompileError(f"kernel arguments {[str(t) for t in types]}: expected memrefs, "
                           "then none or two index arguments (thread number, team size)")
    return [MemRefSpec.from_type(t) for t in types[:n]], team


def _set_function_attributes(module: ir.Module, attrs: dict) -> None:
    """LLVM function attributes of the ISA class (targets.cpu.llvm_function_attributes)
    on every defined function: legal and preferred vector width, `optsize`
    when asked, and for a forced class its target CPU and features."""
    bits = str(attrs["vector_bits"])
    with module.context:
        for op in module.body.operations:
            op = op.operation
            if op.name != "llvm.func" or len(op.regions[0].blocks) == 0:
                continue
            op.attributes["prefer_vector_width"] = ir.StringAttr.get(bits)
            if "target_cpu" in attrs:
                op.attributes["target_cpu"] = ir.StringAttr.get(attrs["target_cpu"])
            if attrs.get("target_features"):
                feats = ", ".join(f'"{f}"' for f in attrs["target_features"])
                op.attributes["target_features"] = ir.Attribute.parse(
                    f"#llvm.target_features<[{feats}]>")
            # Keep what is there (convert-async-to-llvm marks coroutines with
            # "presplitcoroutine", which LLVM's coroutine passes require).
            passthrough = []
            if "passthrough" in op.attributes:
                passthrough = list(ir.ArrayAttr(op.attributes["passthrough"]))
            passthrough.append(ir.ArrayAttr.get([ir.StringAttr.get("min-legal-vector-width"),
                                                 ir.StringAttr.get(bits)]))
            if attrs.get("optsize") and "optsize" not in [
                    ir.StringAttr(a).value for a in passthrough if isinstance(a, ir.StringAttr)]:
                passthrough.append(ir.StringAttr.get("optsize"))
            op.attributes["passthrough"] = ir.ArrayAttr.get(passthrough)


# Kernels loaded from objects (the kernel cache) whose code the async
# runtime's workers may still be returning through: kept, like _PINNED_ENGINES.
_PINNED_OBJECTS: list = []

class CpuKernel:
    """A compiled kernel of the 'llvm' stage, callable on CPU torch tensors.

    Made from the LLVM-dialect module (JIT-compiled by MLIR's ExecutionEngine;
    `keep_object=True` keeps the object code in `.object` for the kernel
    cache) or, with `from_object`, from that object code in a later process,
    linked by the native runtime's ORC loader without compiling anything."""

    def __init__(self, module: ir.Module, name: str, *, output: Any = None,
                 num_threads: Optional[int] = None, pipeline: str = "default<O3>",
                 codegen_level: int = 3, function_attributes: Optional[dict] = None,
                 keep_object: bool = False) -> None:
        self.name = name
        self.num_threads = num_threads
        self._output = output
        op, types = _find_kernel(module, name)
        self.args, self.team_args = _arguments(types)
        self.arg_types = [str(t) for t in types]
        self._uses_async = _uses_async(module)
        self.externals = _external_functions(module)
        _set_function_attributes(module, function_attributes or {"vector_bits": 512})
        self.object: Optional[bytes] = None
        try:
            if self._uses_async and not pipeline.startswith("default<"):
                # Coroutines (convert-async-to-llvm) are lowered by LLVM's coro
                # passes, which only the default<On> pipelines include.
                pipeline = f"coro-early,cgscc(coro-split),coro-cleanup,{pipeline}"
            self._engine = ExecutionEngine._CAPICreate(
                jit_engine(module, pipeline, codegen_level, keep_object))
            for fn, addr in _runtime_symbols(self.externals, self._uses_async).items():
                self._engine.raw_register_runtime(fn, ctypes.c_void_p(addr))
            # The packed entry point (_mlir__mlir_ciface_<name>) the Invoker calls.
            self._fn_addr = self._engine.raw_lookup("_mlir_ciface_" + name)
            if not self._fn_addr:
                raise RuntimeError(f"no function {name!r} in the compiled module")
            self._fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self._fn_addr)
            if keep_object:
                self.object = _dump_object(self._engine)
        except Exception as e:  # the bindings raise RuntimeError with LLVM's message
            raise CompileError(f"JIT compilation of {name!r} failed: {e}") from None
        if self._uses_async:
            _PINNED_ENGINES.append(self._engine)

    @classmethod
    def from_object(cls, data: bytes, name: str, arg_types: Sequence[str],
                    externals: Sequence[str], *, output: Any = None,
                    num_threads: Optional[int] = None,
                    context: Optional[ir.Context] = None) -> "CpuKernel":
        """The kernel of object code made by an earlier `CpuKernel(keep_object=True)`.
        `context`: an MLIR context to parse `arg_types` in (a new one costs
        6-8 ms, a third of loading the object)."""
        self = cls.__new__(cls)
        self.name, self.num_threads, self._output = name, num_threads, output
        with context or ir.Context():
            self.args, self.team_args = _arguments([ir.Type.parse(t) for t in arg_types])
        self.arg_types = list(arg_types)
        self.externals = list(externals)
        self._uses_async = any(f.startswith("mlirAsyncRuntime") for f in externals)
        self.object = data
        symbols = _runtime_symbols(self.externals, self._uses_async)
        try:
            loaded = LoadedObject(data, list(symbols), list(symbols.values()))
            addr = loaded.lookup("_mlir__mlir_ciface_" + name)
        except RuntimeError as e:
            raise CompileError(f"loading the cached kernel {name!r} failed: {e}") from None
        self._engine = loaded
        if self._uses_async:
            _PINNED_OBJECTS.append(loaded)
        self._fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addr)
        self._fn_addr = addr
        return self

    def run(self, *tensors: torch.Tensor) -> None:
        """Calls the kernel on exactly its arguments (inputs then output)."""
        if len(tensors) != len(self.args):
            raise KernelArgumentError(f"{self.name} takes {len(self.args)} tensors "
                                      f"({', '.join(a.type_str for a in self.args)}), "
                                      f"got {len(tensors)}")
        self._invoke(self._checked(0, tensors))

    def _checked(self, first: int, tensors: Sequence[Any], fix: bool = False) -> list:
        """`tensors` checked as the kernel's arguments from index `first` on;
        with `fix`, a tensor whose only mismatch is its layout (a transposed
        view, say) is made contiguous instead of refused."""
        checked = []
        for i, t in enumerate(tensors, first):
            spec = self.args[i]
            if not isinstance(t, torch.Tensor):
                raise KernelArgumentError(f"argument {i} is a {type(t).__name__}, not a tensor")
            if not t.is_cpu:
                raise KernelArgumentError(f"argument {i} is on {t.device}; CPU kernels take "
                                          "CPU tensors")
            why = spec.mismatch(t)
            if why and fix and t.dtype == spec.dtype:
                c = t.contiguous()
                if spec.mismatch(c) is None:
                    t, why = c, None
            if why:
                raise KernelArgumentError(f"argument {i} of {self.name}: {why} "
                                          f"(kernel type {spec.type_str})")
            checked.append(t)
        return checked

    def _invoke(self, tensors: Sequence[torch.Tensor], threads: Optional[int] = None) -> None:
        """The call itself, on checked arguments (`_native_call`)."""
        if not self._native_call(tensors, threads):
            at = self._invoker(0, tensors, 1)   # the index only: a mismatch runs nothing
            raise KernelArgumentError(f"argument {at} of {self.name} does not match "
                                      f"{self.args[at].type_str} after its check")

    def _native_call(self, tensors: Sequence[Any], threads: Optional[int],
                     trusted_from: Optional[int] = None) -> bool:
        """Checks `tensors` (all arguments) and runs the kernel natively (the
        extension's Invoker; measured on the AVX2 host, a B1 decode call at 16
        keys: 42 -> 30 us, torch's own queries of the tensors are most of what
        is left); False, with nothing run, where a tensor does not match.

        The C interface takes each descriptor (allocated, aligned, offset,
        sizes, strides) by pointer and the packed wrapper a pointer to each
        argument; the Invoker builds both in one buffer per call. A kernel
        with team arguments runs on an OpenMP team of `num_threads` threads
        (the native runtime adds each thread's number and the team's size);
        with one thread it is called as thread 0 of a team of 1. `threads`
        (at most num_threads) asks for a smaller team: a kernel made for a
        team is correct on a team of any size. `trusted_from`: the index from
        which the tensors are the API's workspaces (kept descriptors, see
        Invoker)."""
        size = min(threads or self.num_threads or 1, self.num_threads or 1)
        trusted = len(tensors) if trusted_from is None else trusted_from
        if self.team_args and size > 1:
            omp = openmp.runtime()
            if omp is None:
                raise CompileError(f"{self.name} runs on an OpenMP team, but no OpenMP "
                                   "runtime is loaded in this process")
            return self._invoker(self._fn_addr, tensors, size, omp.parallel, omp.thread_num,
                                 omp.num_threads, trusted) < 0
        return self._invoker(self._fn_addr, tensors, 1, 0, 0, 0, trusted) < 0

    @functools.cached_property
    def _invoker(self) -> Invoker:
        return Invoker([(a.dtype, a.rank, list(a._static_sizes), list(a._static_strides))
                        for a in self.args], bool(self.team_args), torch.Tensor)

    def __call__(self, *inputs: torch.Tensor, out: Optional[torch.Tensor] = None,
                 extra: Sequence[torch.Tensor] = (), threads: Optional[int] = None,
                 trusted_extra: bool = False) -> torch.Tensor:
        """Runs on `inputs` (q, k, v[, bias]) and returns the output tensor
        (allocated unless `out` is given). Inputs whose layout differs from the
        kernel's (e.g. a transposed view) are made contiguous first; everything
        else is passed in place. `extra`: the arguments after `out` of the
        lse / split-KV kernel forms (compiler.compile_graph), checked unless
        `trusted_extra` (the API's own workspaces, made to the kernel's
        types). `threads`: the team size asked for (see `_native_call`)."""
        n_in = len(self.args) - 1 - len(extra)
        if len(inputs) != n_in:
            raise KernelArgumentError(f"{self.name} takes {n_in} inputs "
                                      f"({', '.join(a.type_str for a in self.args[:n_in])}), "
                                      f"got {len(inputs)}")
        # Checked and run natively in one step; where anything does not match,
        # the checks below fix the layout or say what is wrong.
        made = out
        if made is None:
            try:
                made = torch.empty(self._output_shape(inputs), dtype=self.args[n_in].dtype)
            except (IndexError, TypeError, AttributeError, RuntimeError):
                made = None      # not tensors of the kernel's ranks
        trusted = n_in + 1 if extra and trusted_extra else None
        if made is not None and self._native_call([*inputs, made, *extra], threads, trusted):
            return made
        fixed = self._checked(0, inputs, fix=True)
        if out is None:
            # Made here to the kernel's type: nothing to check.
            out = torch.empty(self._output_shape(fixed), dtype=self.args[n_in].dtype)
        else:
            self._checked(n_in, [out])
        if not trusted_extra:   # the API's own workspaces are made to the kernel's types
            extra = self._checked(n_in + 1, extra)
        self._invoke([*fixed, out, *extra], threads)
        return out

    def _output_shape(self, inputs: Sequence[torch.Tensor]) -> tuple[int, ...]:
        """Static sizes of the output memref; dynamic ones follow SDPA: [B, H, Lq]
        of the query (first input), Dv of the value (third input)."""
        shape = []
        for d, size in enumerate(self.args[len(inputs)].shape):
            if size is None:
                src = inputs[2] if d == 3 and len(inputs) > 2 else inputs[0]
                size = src.shape[d]
            shape.append(size)
        return tuple(shape)


class EmptyKernel:
    """The kernel of an attention whose output has no elements."""

    def __init__(self, output: Any) -> None:
        self._output = output
        self.dtype = _TORCH_DTYPES[output.dtype]

    def __call__(self, *inputs: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        if out is not None:
            return out
        q = inputs[0]
        shape = [q.shape[d] if s is None else s for d, s in enumerate(self._output.shape)]
        return torch.empty(shape, dtype=self.dtype)


def _dump_object(engine: ExecutionEngine) -> bytes:
    """The object code the engine compiled (its object cache, written to a file)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="attncc-") as d:
        path = os.path.join(d, "kernel.o")
        engine.dump_to_object_file(path)
        return Path(path).read_bytes()


def _uses_async(module: ir.Module) -> bool:
    for op in module.body.operations:
        op = op.operation
        if op.name == "llvm.func" and ir.StringAttr(op.attributes["sym_name"]).value \
                .startswith("mlirAsyncRuntime"):
            return True
    return False

"""Runs GPU kernels (stages 'ptx'/'cubin') on CUDA torch tensors.

    kernel = compiled._kernel          # CudaKernel(metadata, ptx, cubin), made by compile_graph
    out = kernel(q, k, v)              # CUDA tensors in, a new CUDA tensor out
    kernel.run(q, k, v, out)           # or into `out`

Driver access goes through NVIDIA's `cuda-bindings` package
(`cuda.bindings.driver`, `pip install cuda-bindings`), imported on the first
launch only: `import attncc`, compiling, and reading PTX/cubin work without it
and without a GPU. Why the driver API (and not torch.utils.cpp_extension or
cupy): attncc's output is a cubin/PTX plus launch metadata, which is exactly
what cuModuleLoadData + cuLaunchKernel take; cuda-bindings is the official thin
binding of that API, with wheels, no compiler and no extra CUDA runtime.

Each call:
  * checks the tensors against the kernel's argument types (dtype, static
    sizes, CUDA device), makes them contiguous and 16-byte aligned (cp.async
    reads 16-byte chunks), allocates the output with torch;
  * evaluates the grid from the argument shapes (metadata["grid"]);
  * launches on torch's current stream of the tensors' device with
    cuLaunchKernel - no synchronization, no host round trip.
The module is loaded once per device (the cubin when its architecture matches
the device, else the PTX, which the driver JIT-compiles), and kernels that use
more than 48 KiB of shared memory opt in with
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.

Kernel parameters follow MLIR's memref calling convention: for each memref
argument of the gpu.func, its descriptor expanded into (allocated pointer,
aligned pointer, offset, sizes..., strides...), all 64-bit. A TMA argument
(metadata "tensor_map": the sm_90a kernel's `nvgpu.tma.create.descriptor`s) is
one pointer to a 128-byte CUtensorMap in device memory: each call encodes the
maps of its tensors with cuTensorMapEncodeTiled (dims and byte strides of the
tensor, innermost first; the box of the metadata; 128-byte swizzle; zero fill
out of bounds) and copies them to a small torch CUDA buffer on the current
stream (what MLIR's own mgpuTensorMapEncodeTiledMemref does with cuMemAlloc).
"""
from __future__ import annotations

import ctypes
import struct
import threading
from typing import Any, Optional

from ..errors import AttnccError, InputError
from .grid import eval_expr

_TORCH_DTYPES = {"f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
                 "i32": "int32"}


class CudaUnavailable(AttnccError, RuntimeError):
    """The kernel cannot run here: no CUDA device, driver, or cuda-bindings."""


def _driver():
    try:
        from cuda.bindings import driver  # type: ignore
    except ImportError:
        try:
            from cuda import cuda as driver  # type: ignore  # cuda-python < 12.6
        except ImportError:
            raise CudaUnavailable(
                "running a GPU kernel needs NVIDIA's cuda-bindings package "
                "(pip install cuda-bindings) and a CUDA driver") from None
    return driver


def encode_tensor_map(driver, t, spec: dict[str, Any]) -> bytes:
    """The 128 bytes of the CUtensorMap for tensor `t` (a contiguous, 16-byte
    aligned CUDA tensor) and a metadata "tensor_map" entry."""
    dtypes = {"f16": driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
              "bf16": driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}
    if spec["swizzle"] != "swizzle_128b" or spec["interleave"] != "none" or spec["oob"] != "zero":
        raise CudaUnavailable(f"unsupported tensor map {spec}")
    rank, esize = t.dim(), t.element_size()
    dims = [driver.cuuint64_t(int(n)) for n in reversed(t.shape)]
    strides = [driver.cuuint64_t(int(st) * esize) for st in reversed(t.stride()[:-1])]
    if any(int(st) * esize % 16 for st in t.stride()[:-1]):
        raise InputError(f"TMA needs byte strides that are multiples of 16, got {t.stride()} "
                         f"x {esize} bytes")
    box = [driver.cuuint32_t(int(n)) for n in reversed(spec["box"])]
    ones = [driver.cuuint32_t(1)] * rank
    l2 = {"l2promo_none": "CU_TENSOR_MAP_L2_PROMOTION_NONE",
          "l2promo_64b": "CU_TENSOR_MAP_L2_PROMOTION_L2_64B",
          "l2promo_128b": "CU_TENSOR_MAP_L2_PROMOTION_L2_128B",
          "l2promo_256b": "CU_TENSOR_MAP_L2_PROMOTION_L2_256B"}[spec["l2promo"]]
    tmap = _check(driver, driver.cuTensorMapEncodeTiled(
        dtypes[spec["dtype"]], rank, t.data_ptr(), dims, strides, box, ones,
        driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        driver.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        getattr(driver.CUtensorMapL2promotion, l2),
        driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE), "cuTensorMapEncodeTiled")
    return struct.pack("<16Q", *[int(x) for x in tmap.opaque])


def _device_bytes(blob: bytes, device):
    """`blob` in device memory (a torch tensor: the caching allocator frees it
    in stream order, after the kernel that reads it); returns (tensor, pointer)."""
    import torch

    buf = torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(device)
    return buf, buf.data_ptr()


def _check(driver, result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, name = driver.cuGetErrorName(err)
        raise CudaUnavailable(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def cuda_available() -> tuple[bool, str]:
    """(True, "") when kernels can run; else (False, why)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device (CPU-only torch build or no GPU/driver)"
    try:
        _driver()
    except CudaUnavailable as e:
        return False, str(e)
    return True, ""


class CudaKernel:
    """A compiled GPU kernel: launch metadata + PTX (+ cubin)."""

    def __init__(self, metadata: dict[str, Any], ptx: Optional[str], cubin: Optional[bytes]):
        self.metadata = metadata
        self.ptx = ptx
        self.cubin = cubin
        self._functions: dict[int, Any] = {}
        self._lock = threading.Lock()

    # ---- loading
    def _function(self, device_index: int):
        fn = self._functions.get(device_index)
        if fn is not None:
            return fn
        with self._lock:
            if device_index in self._functions:
                return self._functions[device_index]
            import torch

            driver = _driver()
            _check(driver, driver.cuInit(0), "cuInit")
            with torch.cuda.device(device_index):
                torch.cuda.current_stream()  # torch makes its primary context current
                ctx = _check(driver, driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
                if not int(ctx):
                    dev = _check(driver, driver.cuDeviceGet(device_index), "cuDeviceGet")
                    ctx = _check(driver, driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
                    _check(driver, driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
                major, minor = torch.cuda.get_device_capability(device_index)
                chip = self.metadata["chip"]
                want = 9 if chip == "sm_90a" else 8
                if major < want or (chip == "sm_90a" and (major, minor) != (9, 0)):
                    raise CudaUnavailable(f"this kernel was compiled for {chip}; device "
                                          f"{device_index} is sm_{major}{minor}")
                image = self.cubin if (self.cubin is not None and major == want) else None
                if image is None:
                    if self.ptx is None:
                        raise CudaUnavailable("no cubin for this device and no PTX to JIT")
                    image = self.ptx.encode() + b"\0"
                module = _check(driver, driver.cuModuleLoadData(image), "cuModuleLoadData")
                fn = {}   # kernel name -> CUfunction (split-KV: the splits and the combine)
                for launch in self.launches():
                    name = launch["kernel"]
                    fn[name] = f = _check(driver, driver.cuModuleGetFunction(module, name.encode()),
                                          "cuModuleGetFunction")
                    smem = int(launch["shared_bytes"])
                    if smem > 48 * 1024:
                        attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                        _check(driver, driver.cuFuncSetAttribute(f, attr, smem), "cuFuncSetAttribute")
            self._functions[device_index] = (driver, module, fn, ctx)
            return self._functions[device_index]

    # ---- arguments
    def _out_index(self) -> int:
        """The output's host argument: the last one, or (the lse form) the
        one before the lse."""
        return self.metadata.get("roles", {}).get("out", len(self.metadata["host_args"]) - 1)

    def _inputs(self, tensors, first: int = 0, device=None):
        """Checks `tensors` against host arguments first, first + 1, ...:
        the inputs (all before `out`), or with `first` past `out` the extra
        arguments after it."""
        host = self.metadata["host_args"]
        n_in = (self._out_index() if first == 0 else len(host)) - first
        if len(tensors) != n_in:
            what = "tensors" if first == 0 else "extra tensors after the output"
            raise InputError(f"the kernel takes {n_in} {what}, got {len(tensors)}")
        out = []
        for i, (t, spec) in enumerate(zip(tensors, host[first:first + n_in]), first):
            device = self._check_arg(i, t, spec, device)
            if first and (not t.is_contiguous() or t.data_ptr() % 16):
                raise InputError(f"argument {i} is written in place: it must be contiguous and "
                                 f"16-byte aligned")
            out.append(t if first else self._aligned(t))
        return out, device

    @classmethod
    def _check_arg(cls, i, t, spec, device):
        """Argument i against its host_args entry: a CUDA tensor on `device`
        (None: the first one sets it), of the kernel's dtype and shape.
        Returns the device."""
        import torch

        if not isinstance(t, torch.Tensor):
            raise InputError(f"argument {i} is not a tensor")
        if t.device.type != "cuda":
            raise InputError(f"argument {i} is on {t.device}; GPU kernels take CUDA tensors")
        device = device or t.device
        if t.device != device:
            raise InputError(f"argument {i} is on {t.device}, argument 0 on {device}")
        want = getattr(torch, _TORCH_DTYPES[spec["dtype"]])
        if t.dtype != want:
            raise InputError(f"argument {i} has dtype {t.dtype}, the kernel takes {want}")
        cls._check_shape(i, t.shape, spec["shape"])
        return device

    @staticmethod
    def _check_shape(i, shape, spec):
        if len(shape) != len(spec) or any(s is not None and s != d for s, d in zip(spec, shape)):
            raise InputError(f"argument {i} has shape {tuple(shape)}, the kernel takes "
                             f"{tuple('?' if s is None else s for s in spec)}")

    @staticmethod
    def _aligned(t):
        t = t.contiguous()
        if t.data_ptr() % 16:
            t = t.clone()  # the caching allocator hands out aligned blocks
        return t

    def output_shape(self, inputs) -> tuple[int, ...]:
        roles = self.metadata.get("roles", {})
        spec = self.metadata["host_args"][self._out_index()]["shape"]
        q, v = inputs[roles.get("q", 0)], inputs[roles.get("v", 2)]
        dyn = list(q.shape[:3]) + [v.shape[3]]
        return tuple(dyn[i] if s is None else s for i, s in enumerate(spec))

    # ---- launch
    def __call__(self, *tensors, extra=(), trusted_extra: bool = False, threads=None):
        """The output of the kernel on `tensors`. `extra`: the arguments after
        the output (the lse form's f32 lse [B, H, L]), written in place;
        `trusted_extra`, `threads`: the CPU kernels' calling convention (the
        API's workspaces are checked here all the same: a wrong device would
        be a fault, not an error)."""
        import torch

        inputs, device = self._inputs(tensors)
        extra = self._inputs(extra, first=self._out_index() + 1, device=device)[0]
        spec = self.metadata["host_args"][self._out_index()]
        shape = self.output_shape(inputs)
        if extra and tuple(extra[0].shape) != tuple(shape[:3]):   # the kernel writes [B, H, L]
            raise InputError(f"lse has shape {tuple(extra[0].shape)}, the output's rows are "
                             f"{tuple(shape[:3])}")
        if len(extra) == 3:   # split-KV: part [P * B, H, L, Dv], part_lse [P * B, H, L]
            part, part_lse = extra[1], extra[2]
            rows = part.shape[0]
            B = max(shape[0], 1)
            if rows % B or tuple(part.shape[1:]) != tuple(shape[1:]) or \
                    tuple(part_lse.shape) != (rows,) + tuple(shape[1:3]):
                raise InputError(f"split-KV workspaces of shapes {tuple(part.shape)} and "
                                 f"{tuple(part_lse.shape)} do not fit the output "
                                 f"{tuple(shape)} (expected [P * B, H, L, Dv] and [P * B, H, L])")
        out = torch.empty(shape, dtype=getattr(torch, _TORCH_DTYPES[spec["dtype"]]), device=device)
        self._launch(inputs + [out] + extra, device)
        return out

    def run(self, *tensors_and_out):
        """Writes into the last tensor (which must be contiguous and 16-byte aligned)."""
        *tensors, out = tensors_and_out
        if self._out_index() != len(self.metadata["host_args"]) - 1:
            raise InputError("this kernel takes arguments after its output (lse, split-KV "
                             "workspaces): call it with extra=(...) instead of run()")
        inputs, device = self._inputs(tensors)
        spec = self.metadata["host_args"][self._out_index()]
        self._check_shape(len(inputs), out.shape, spec["shape"])
        if not out.is_contiguous() or out.data_ptr() % 16 or out.device != device:
            raise InputError("the output must be a contiguous, 16-byte aligned tensor on the "
                             "inputs' device")
        self._launch(inputs + [out], device)
        return out

    def run_args(self, *args):
        """Launches on every host argument in order (inputs, the output and
        what follows it), each read or written where it is: the ragged /
        paged API's convention, whose q, caches and output are strided views
        (packed [tokens, heads, D] tensors, NHD caches). An argument whose
        rows the kernel takes strided ("rows") needs a unit innermost stride
        and 16-byte aligned rows (cp.async reads 16-byte chunks); one of any
        strides ("any": the lse) anything; any other must be contiguous and
        16-byte aligned."""
        host = self.metadata["host_args"]
        if len(args) != len(host):
            raise InputError(f"the kernel takes {len(host)} arguments, got {len(args)}")
        device = None
        for i, (t, spec) in enumerate(zip(args, host)):
            device = self._check_arg(i, t, spec, device)
            if spec.get("strided") == "any":
                pass
            elif spec.get("strided") == "rows":
                esize = t.element_size()
                if (t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1) or t.data_ptr() % 16 or \
                        any(st * esize % 16 for st in t.stride()[:-1]):
                    raise InputError(f"argument {i} (strides {t.stride()}) needs a unit innermost "
                                     f"stride and 16-byte aligned rows")
            elif not t.is_contiguous() or t.data_ptr() % 16:
                raise InputError(f"argument {i} must be contiguous and 16-byte aligned")
        self._launch(list(args), device)

    def launches(self) -> list[dict[str, Any]]:
        """The launches in order (metadata from before split-KV has one)."""
        return self.metadata.get("launches") or [self.metadata]

    def launch_config(self, shapes, launch=None) -> tuple[list[int], list[int], int]:
        launch = launch or self.metadata
        grid = [eval_expr(e, shapes) for e in launch["grid"]]
        return grid, list(launch["block"]), int(launch["shared_bytes"])

    def tensor_maps(self, driver, args, device, launch=None) -> tuple[Any, list[int]]:
        """The kernel's TMA tensor maps in device memory: (buffer to keep
        alive until the launch is queued, one device pointer per map)."""
        launch = launch or self.metadata
        specs = [ka for ka in launch["kernel_args"] if "tensor_map" in ka]
        if not specs:
            return None, []
        blob = b"".join(encode_tensor_map(driver, args[ka["arg"]], ka["tensor_map"]) for ka in specs)
        buf, base = _device_bytes(blob, device)
        return buf, [base + 128 * i for i in range(len(specs))]

    def pack_params(self, args, map_pointers: Optional[list[int]] = None,
                    launch=None) -> tuple[Any, list]:
        """The kernelParams array (void**) for cuLaunchKernel and the ctypes
        objects it points to (keep them alive until the launch returns);
        `map_pointers`: the device addresses of the tensor maps, in order."""
        keep = []
        maps = iter(map_pointers or [])
        for ka in (launch or self.metadata)["kernel_args"]:
            if "tensor_map" in ka:
                keep.append(ctypes.c_void_p(next(maps)))
                continue
            t = args[ka["arg"]]
            ptr = t.data_ptr()
            keep += [ctypes.c_void_p(ptr), ctypes.c_void_p(ptr), ctypes.c_int64(0)]
            keep += [ctypes.c_int64(s) for s in t.shape]
            keep += [ctypes.c_int64(s) for s in t.stride()]
        params = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(x) for x in keep])
        return params, keep

    def _launch(self, args, device):
        import torch

        if not torch.cuda.is_available():
            raise CudaUnavailable("no CUDA device: torch.cuda.is_available() is False")
        driver, _, fn, ctx = self._function(device.index if device.index is not None
                                            else torch.cuda.current_device())
        # The module lives in the device's primary context (torch's): make it
        # current on this thread if another thread loaded the module.
        current = _check(driver, driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
        if int(current) != int(ctx):
            _check(driver, driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        stream = driver.CUstream(torch.cuda.current_stream(device).cuda_stream)
        shapes = [tuple(a.shape) for a in args]
        for launch in self.launches():   # in order, on one stream
            grid, block, smem = self.launch_config(shapes, launch)
            if min(grid) == 0:
                continue
            maps, map_pointers = self.tensor_maps(driver, args, device, launch)
            params, keep = self.pack_params(args, map_pointers, launch)
            _check(driver, driver.cuLaunchKernel(fn[launch["kernel"]], *grid, *block, smem, stream,
                                                 ctypes.addressof(params), 0), "cuLaunchKernel")
            del keep, maps

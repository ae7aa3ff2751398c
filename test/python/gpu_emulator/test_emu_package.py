"""attncc.gpu_emulator as a component: a leaf package (stdlib, numpy and the
mlir bindings only, nothing else of attncc), one handler per op name across
its ISA modules, and the public API the GPU tests use."""
import ast
import sys
from pathlib import Path

import attncc.gpu_emulator as emu
from attncc.gpu_emulator.interpreter import Interpreter
from attncc.gpu_emulator.program import Program

PKG = Path(emu.__file__).parent
ALLOWED = {"numpy", "mlir"}


def test_imports_only_stdlib_numpy_and_mlir():
    bad = []
    for path in sorted(PKG.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:            # relative: inside the package
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    bad.append(f"{path.name}:{node.lineno}: {name}")
    assert bad == []
    assert len(list(PKG.glob("*.py"))) >= 10


def test_each_op_has_one_handler_across_the_mixins():
    owners = {}
    for cls in Program.__mro__[1:]:
        if cls is object:
            continue
        for name in vars(cls):
            if name.startswith("op_") or (name.startswith("_") and not name.startswith("__")):
                owners.setdefault(name, []).append(cls.__name__)
    twice = {n: o for n, o in owners.items() if len(o) > 1}
    assert twice == {}
    handlers = [n for n in dir(Program) if n.startswith("op_")]
    # The ISA areas of the emulator, each with its handlers.
    for op in ("op_gpu_shuffle", "op_nvgpu_device_async_copy", "op_nvgpu_ldmatrix",
               "op_nvgpu_mma_sync", "op_nvvm_wgmma_mma_async", "op_nvgpu_tma_async_load",
               "op_nvgpu_mbarrier_try_wait_parity", "op_scf_for", "op_gpu_launch_func"):
        assert op in handlers
    assert issubclass(Program, Interpreter)


def test_public_api():
    for name in ("Program", "SimError", "round_bf16", "bf16_bits", "bits_bf16", "Pending",
                 "WgToken", "ptx_isa"):
        assert hasattr(emu, name), name
    assert issubclass(emu.SimError, AssertionError)
    assert emu.Program.WAIVABLE == {"wgmma-a-fence", "wgmma-acc-fence", "mbarrier-init-fence",
                                    "tensormap-fence"}
    # bf16: round to nearest even on the upper 16 bits.
    x = emu.round_bf16([1.0, 1.00390625, 1.01171875, -3.0])
    assert x.tolist() == [1.0, 1.0, 1.015625, -3.0]
    assert emu.bits_bf16(emu.bf16_bits(x)).tolist() == x.tolist()

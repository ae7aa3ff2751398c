"""The emulator's sm_90a warpgroup MMA (attncc.gpu_emulator: wgmma.py,
ptx_isa.py) against the PTX ISA ("Asynchronous Warpgroup Level Matrix Multiply-Accumulate"):
descriptor fields, the canonical shared-memory layouts of the ISA's worked
examples, the swizzle, the register fragments, and hand-written kernels (one
wgmma with both operands in shared memory, one with A in registers and an
N-major B) run by the emulator against numpy, with single edits of those
kernels that break the wgmma / proxy-fence rules and must be caught.

The emulator imports only the `mlir` bindings and numpy (nothing else of
attncc; importing attncc.gpu_emulator still loads the attncc package)."""
import re

import numpy as np
import pytest
from mlir import ir

from attncc import gpu_emulator as emu
from attncc.gpu_emulator import ptx_isa as isa


# --------------------------------------------------------------------------- descriptor

def test_descriptor_fields_bit_positions():
    # "Matrix Descriptor Format": 13-0 start, 29-16 LBO, 45-32 SBO (each
    # matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4), 51-49 base offset,
    # 63-62 swizzle mode (1 = 128-byte).
    d = isa.make_descriptor(start=0x2400, lbo=256, sbo=1024, swizzle=1)
    assert d == (0x2400 >> 4) | (16 << 16) | (64 << 32) | (1 << 62)
    assert isa.decode_descriptor(d) == dict(start=0x2400, lbo=256, sbo=1024, base_offset=0, swizzle=1)
    # The encode keeps 18 address bits: 0x40010 encodes like 0x10.
    assert isa.desc_encode(0x40010) == 1
    # Mode 3 sets bit 63: a negative int64 in the emulator decodes the same.
    d3 = isa.make_descriptor(0x100, 16, 128, swizzle=3, base_offset=5)
    neg = d3 - (1 << 64)
    assert neg < 0
    assert isa.decode_descriptor(neg) == dict(start=0x100, lbo=16, sbo=128, base_offset=5, swizzle=3)


# --------------------------------------------------------------------------- layouts

def _cute(coord_mn, coord_k, shape_mn, stride_mn, shape_k, stride_k):
    """Offset of a CuTe hierarchical layout ((shape_mn),(shape_k)):((stride_mn),(stride_k))
    at (coord_mn, coord_k), colexicographic within each mode."""
    off = 0
    for c, shapes, strides in ((coord_mn, shape_mn, stride_mn), (coord_k, shape_k, stride_k)):
        for s, d in zip(shapes, strides):
            off += (c % s) * d
            c //= s
    return off


# The ISA's "Canonical Layouts" examples ("Exact layout" with its LBO / SBO),
# in elements: (k_major, swizzle mode, element bytes, MN extent, K extent,
# exact layout, LBO elements, SBO elements).
ISA_EXAMPLES = {
    "K-major no-swizzle tf32": (True, 0, 4, 16, 16, ((8, 2), (4, 32), (4, 4), (1, 64)), 64, 32),
    "K-major 32B tf32": (True, 3, 4, 16, 16, ((8, 2), (8, 64), (4, 4), (1, 4)), None, 64),
    "MN-major no-swizzle bf16": (False, 0, 2, 16, 16, ((8, 1, 2), (1, 8, 64), (8, 2), (8, 128)), 128, 64),
    "MN-major 32B bf16": (False, 3, 2, 32, 16, ((8, 2, 2), (1, 8, 128), (8, 2), (16, 256)), 128, 256),
    "MN-major 64B bf16": (False, 2, 2, 64, 16, ((8, 4, 2), (1, 8, 256), (8, 2), (32, 512)), 256, 512),
}


@pytest.mark.parametrize("name", list(ISA_EXAMPLES))
def test_canonical_layout_matches_isa_examples(name):
    k_major, swz, eb, MN, K, (smn, dmn, sk, dk), lbo, sbo = ISA_EXAMPLES[name]
    fields = dict(start=0, lbo=(lbo or 1) * eb, sbo=sbo * eb, base_offset=0, swizzle=swz)
    mn, k = np.meshgrid(np.arange(MN), np.arange(K), indexing="ij")
    got = isa.wgmma_smem_offset(mn, k, fields, k_major, eb)
    want = np.vectorize(lambda a, b: _cute(a, b, smn, dmn, sk, dk))(mn, k) * eb
    np.testing.assert_array_equal(got, want)


def test_k_major_128b_layout_and_k_steps():
    # K-major, 128-byte swizzle, f16: ((8,m),(8,2k)):((64,SBO),(1,8)) elements:
    # row m at (m % 8) * 128 B + (m // 8) * SBO; a k16 slice is 32 contiguous
    # bytes, and the next slice starts 32 bytes further (start address + 32).
    sbo = 1024
    fields = dict(start=0, lbo=16, sbo=sbo, base_offset=0, swizzle=1)
    for m in (0, 1, 7, 8, 63):
        for k in (0, 1, 15):
            assert isa.wgmma_smem_offset(m, k, fields, True) == (m % 8) * 128 + (m // 8) * sbo + 2 * k
    # Swizzled byte address of element (m, k) of k-slice s: the 16-byte chunk
    # (2 s + k // 8) of row m, XORed with m % 8 (1024-byte aligned atom).
    for s in range(4):
        d = isa.make_descriptor(0x4000 + 32 * s, 16, sbo)
        for m in (0, 3, 9, 62):
            for k in (0, 7, 8, 15):
                chunk = (2 * s + k // 8) ^ (m % 8)
                want = 0x4000 + (m // 8) * sbo + (m % 8) * 128 + chunk * 16 + (k % 8) * 2
                assert isa.wgmma_smem_address(m, k, d, True) == want


def test_mn_major_128b_layout_panels():
    # MN-major, 128-byte swizzle: ((8,8,m),(8,k)):((1,8,LBO),(64,SBO)):
    # 64 contiguous n per k-row, 8-row groups SBO apart, 64-column panels LBO apart.
    lbo, sbo = 4096, 1024
    fields = dict(start=0, lbo=lbo, sbo=sbo, base_offset=0, swizzle=1)
    for n in (0, 5, 63, 64, 127):
        for k in (0, 7, 8, 15):
            want = 2 * (n % 64) + (n // 64) * lbo + (k % 8) * 128 + (k // 8) * sbo
            assert isa.wgmma_smem_offset(n, k, fields, False) == want


def test_swizzle_hand_examples():
    # 128 B (Swizzle<3,4,3> on bytes): chunk bits [4:6] ^= row bits [7:9].
    assert isa.swizzle_address(0x000, 1) == 0x000
    assert isa.swizzle_address(0x080, 1) == 0x090      # row 1, chunk 0 -> chunk 1
    assert isa.swizzle_address(0x3F0, 1) == 0x380      # row 7, chunk 7 -> chunk 0
    assert isa.swizzle_address(0x3F6, 1) == 0x386      # byte within the chunk kept
    assert isa.swizzle_address(0x410, 1) == 0x410      # row 0 of the next 1024-byte atom
    assert isa.swizzle_address(0x4A0, 1) == 0x4B0      # row 1 of it: chunk 2 -> 3
    # 64 B (Swizzle<2,4,3>) and 32 B (Swizzle<1,4,3>), none.
    assert isa.swizzle_address(0x180, 2) == 0x1B0
    assert isa.swizzle_address(0x1F0, 2) == 0x1C0
    assert isa.swizzle_address(0x180, 3) == 0x190
    assert isa.swizzle_address(0x1F0, 0) == 0x1F0
    a = np.arange(0, 4096, 2)
    s = isa.swizzle_address(a, 1)
    assert sorted(s) == list(a)                          # a permutation
    assert np.all(s // 128 == a // 128)                  # inside each 128-byte row


# --------------------------------------------------------------------------- fragments

def test_d_fragment_hand_examples():
    # Figure "WGMMA .m64nNk16 register fragment layout for accumulator D":
    # warp w holds rows 16w..16w+15; lane l: row l/4 (+8 for d2, d3), columns
    # 2(l%4), 2(l%4)+1 of each 8-column block (d0,d1 | d2,d3 per block).
    assert isa.wgmma_d(0, 0, 0) == (0, 0)
    assert isa.wgmma_d(0, 0, 1) == (0, 1)
    assert isa.wgmma_d(0, 0, 2) == (8, 0)
    assert isa.wgmma_d(0, 0, 3) == (8, 1)
    assert isa.wgmma_d(0, 0, 4) == (0, 8)
    assert isa.wgmma_d(0, 5, 0) == (1, 2)
    assert isa.wgmma_d(2, 6, 7) == (32 + 1 + 8, 8 + 4 + 1)
    assert isa.wgmma_d(3, 31, 31) == (63, 63)
    for n in (8, 64, 128):
        cells = {isa.wgmma_d(t // 32, t % 32, i) for t in range(128) for i in range(n // 2)}
        assert cells == {(r, c) for r in range(64) for c in range(n)}


def test_a_fragment_hand_examples():
    # Figure "WGMMA .m64nNk16 register fragment layout for matrix A": per warp
    # the mma.m16n8k16 A layout, warp w on rows 16w..16w+15.
    assert isa.wgmma_a(0, 0, 0) == (0, 0)
    assert isa.wgmma_a(0, 0, 2) == (8, 0)
    assert isa.wgmma_a(0, 0, 4) == (0, 8)
    assert isa.wgmma_a(0, 0, 7) == (8, 9)
    assert isa.wgmma_a(1, 7, 1) == (16 + 1, 7)
    assert isa.wgmma_a(3, 31, 6) == (48 + 7 + 8, 6 + 8)
    cells = {isa.wgmma_a(t // 32, t % 32, i) for t in range(128) for i in range(8)}
    assert cells == {(r, c) for r in range(64) for c in range(16)}


# --------------------------------------------------------------------------- kernels

WG = "#gpu.address_space<workgroup>"


class K:
    """A tiny MLIR text builder for the kernels below."""

    def __init__(self):
        self.lines, self.n = [], 0

    def v(self, text: str) -> str:
        self.n += 1
        name = f"%v{self.n}"
        self.lines.append(f"{name} = {text}")
        return name

    def op(self, text: str):
        self.lines.append(text)

    def c(self, x: int, t: str = "index") -> str:
        return self.v(f"arith.constant {x} : {t}")


def _swizzled_copy(k: K, src, src_t, dst, dst_t, rows: int, row_chunks: int, src_col0, dst_elt,
                   tid):
    """cp.async of a [rows, 8 * row_chunks] global tile in 16-byte chunks;
    dst_elt(k, row, chunk) gives the destination element index (the 128-byte
    swizzle written as chunk ^ (row % 8) inside 1024-byte atoms)."""
    total = rows * row_chunks
    c0, step, end = k.c(0), k.c(128), k.c(total)
    k.op(f"scf.for %i{k.n} = {c0} to {end} step {step} {{")
    i = f"%i{k.n}"
    k.n += 1
    cid = k.v(f"arith.addi {i}, {tid} : index")
    rc = k.c(row_chunks)
    row = k.v(f"arith.divui {cid}, {rc} : index")
    ch = k.v(f"arith.remui {cid}, {rc} : index")
    col = k.v(f"arith.muli {ch}, {k.c(8)} : index")
    col = k.v(f"arith.addi {col}, {src_col0} : index")
    d = dst_elt(k, row, ch)
    k.v(f"nvgpu.device_async_copy {src}[{row}, {col}], {dst}[{d}], 8 : {src_t} to {dst_t}")
    k.op("scf.yield")
    k.op("}")


def _k_major_elt(k: K, row, ch):
    # 64-element rows; atom row = row % 8; chunk ^ atom row.
    r8 = k.v(f"arith.remui {row}, {k.c(8)} : index")
    sw = k.v(f"arith.xori {ch}, {r8} : index")
    base = k.v(f"arith.muli {row}, {k.c(64)} : index")
    off = k.v(f"arith.muli {sw}, {k.c(8)} : index")
    return k.v(f"arith.addi {base}, {off} : index")


def _mn_major_elt(rows: int):
    def f(k: K, row, ch):
        # Panel p = ch // 8 of `rows` 128-byte rows, chunk ch % 8 ^ (row % 8).
        panel = k.v(f"arith.divui {ch}, {k.c(8)} : index")
        c8 = k.v(f"arith.remui {ch}, {k.c(8)} : index")
        r8 = k.v(f"arith.remui {row}, {k.c(8)} : index")
        sw = k.v(f"arith.xori {c8}, {r8} : index")
        pb = k.v(f"arith.muli {panel}, {k.c(rows * 64)} : index")
        rb = k.v(f"arith.muli {row}, {k.c(64)} : index")
        off = k.v(f"arith.muli {sw}, {k.c(8)} : index")
        return k.v(f"arith.addi {k.v(f'arith.addi {pb}, {rb} : index')}, {off} : index")
    return f


def _descriptor(k: K, view, view_t, lbo: int, sbo: int, rank: int = 1):
    ptr = k.v(f"memref.extract_aligned_pointer_as_index {view} : {view_t} -> index")
    k.n += 1
    md = f"%md{k.n}"
    idx = ", ".join(["index"] * (1 + 2 * rank))
    elt = re.search(r"x(f16|bf16)", view_t).group(1)
    k.op(f"{md}:{2 + 2 * rank} = memref.extract_strided_metadata {view} : {view_t} -> "
         f"memref<{elt}, {WG}>, {idx}")
    off2 = k.v(f"arith.muli {md}#1, {k.c(2)} : index")
    addr = k.v(f"arith.addi {ptr}, {off2} : index")
    a64 = k.v(f"arith.index_castui {addr} : index to i64")
    s = k.v(f"arith.shrui {a64}, {k.c(4, 'i64')} : i64")
    s = k.v(f"arith.andi {s}, {k.c(0x3FFF, 'i64')} : i64")
    fixed = ((lbo >> 4) << 16) | ((sbo >> 4) << 32) | (1 << 62)
    return k.v(f"arith.ori {s}, {k.c(fixed, 'i64')} : i64")


def _struct(n: int) -> str:
    return "!llvm.struct<(" + ", ".join(["f32"] * n) + ")>"


def wgmma_module(kind: str, n: int, elt: str, ksteps: int) -> str:
    """kind "ss": D[64, n] = A[64, 16 ksteps] @ B with A (K-major) and B^T
    ([n, 16 ksteps], K-major) in shared memory, nvvm.wgmma.mma_async.
    kind "rs": A from registers, B [16 ksteps, n] N-major (imm-trans-b 1)
    through inline PTX. Output: the raw registers d[thread, i]."""
    K_ = 16 * ksteps
    assert (kind == "ss" and K_ == 64 and n <= 128) or (kind == "rs" and n % 64 == 0)
    st = _struct(n // 2)
    a_t = f"memref<64x{K_}x{elt}>"
    b_t = f"memref<{n}x{K_}x{elt}>" if kind == "ss" else f"memref<{K_}x{n}x{elt}>"
    d_t = f"memref<128x{n // 2}xf32>"
    dsm_t = f"memref<?xi8, {WG}>"
    k = K()
    tid = k.v("gpu.thread_id x")
    dsm = k.v(f"gpu.dynamic_shared_memory : {dsm_t}")
    # Tiles at the first 1024-byte boundary of dynamic shared memory.
    base = k.v(f"memref.extract_aligned_pointer_as_index {dsm} : {dsm_t} -> index")
    neg = k.v(f"arith.subi {k.c(0)}, {base} : index")
    pad = k.v(f"arith.andi {neg}, {k.c(1023)} : index")
    c0 = k.c(0)
    if kind == "ss":
        va_t = f"memref<{64 * 64}x{elt}, {WG}>"
        vb_t = f"memref<{n * 64}x{elt}, {WG}>"
        va = k.v(f"memref.view {dsm}[{pad}][] : {dsm_t} to {va_t}")
        shb = k.v(f"arith.addi {pad}, {k.c(8192)} : index")
        vb = k.v(f"memref.view {dsm}[{shb}][] : {dsm_t} to {vb_t}")
        _swizzled_copy(k, "%a", a_t, va, va_t, 64, 8, c0, _k_major_elt, tid)
        _swizzled_copy(k, "%b", b_t, vb, vb_t, n, 8, c0, _k_major_elt, tid)
    else:
        vb_t = f"memref<{K_ * n}x{elt}, {WG}>"
        vb = k.v(f"memref.view {dsm}[{pad}][] : {dsm_t} to {vb_t}")
        _swizzled_copy(k, "%b", b_t, vb, vb_t, K_, n // 8, c0, _mn_major_elt(K_), tid)
    k.op("%grp = nvgpu.device_async_create_group")
    k.op("nvgpu.device_async_wait %grp {numGroups = 0 : i32}")
    k.op("nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}")
    k.op("gpu.barrier")
    acc = k.v(f"llvm.mlir.zero : {st}")
    if kind == "rs":
        # A fragments (ISA figure: per warp the m16n8k16 A layout, rows + 16 w).
        w = k.v(f"arith.divui {tid}, {k.c(32)} : index")
        lane = k.v(f"arith.remui {tid}, {k.c(32)} : index")
        g = k.v(f"arith.divui {lane}, {k.c(4)} : index")
        t2 = k.v(f"arith.muli {k.v(f'arith.remui {lane}, {k.c(4)} : index')}, {k.c(2)} : index")
        row0 = k.v(f"arith.addi {k.v(f'arith.muli {w}, {k.c(16)} : index')}, {g} : index")
        regs = []
        for s in range(ksteps):
            rs = []
            for r in range(4):   # {a0,a1} row g; {a2,a3} g+8; {a4,a5} g, col+8; {a6,a7} g+8, col+8
                row = k.v(f"arith.addi {row0}, {k.c(8 * (r % 2))} : index")
                col = k.v(f"arith.addi {t2}, {k.c(8 * (r // 2) + 16 * s)} : index")
                col1 = k.v(f"arith.addi {col}, {k.c(1)} : index")
                x0 = k.v(f"memref.load %a[{row}, {col}] : {a_t}")
                x1 = k.v(f"memref.load %a[{row}, {col1}] : {a_t}")
                vec = k.v(f"vector.from_elements {x0}, {x1} : vector<2x{elt}>")
                i32 = k.v(f"vector.bitcast {vec} : vector<2x{elt}> to vector<1xi32>")
                rs.append(k.v(f"vector.extract {i32}[0] : i32 from vector<1xi32>"))
            regs.append(rs)
    k.op("nvvm.wgmma.fence.aligned")
    if kind == "ss":
        da = _descriptor(k, va, va_t, 16, 1024)
        db = _descriptor(k, vb, vb_t, 16, 1024)
        for s in range(ksteps):
            a_s = k.v(f"arith.addi {da}, {k.c(2 * s, 'i64')} : i64")
            b_s = k.v(f"arith.addi {db}, {k.c(2 * s, 'i64')} : i64")
            acc = k.v(f"nvvm.wgmma.mma_async {a_s}, {b_s}, {acc}, #nvvm.shape<m = 64, n = {n}, k = 16>, "
                      f"D[<f32>, <one>], A[<{elt}>, <one>, <row>], B[<{elt}>, <one>, <col>] : {st} -> {st}")
    else:
        h = n // 2
        db = _descriptor(k, vb, vb_t, K_ * 128, 1024)
        text = (f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{elt}.{elt} {{"
                + ", ".join(f"${i}" for i in range(h)) + f"}}, {{${2 * h}, ${2 * h + 1}, ${2 * h + 2}, "
                f"${2 * h + 3}}}, ${2 * h + 4}, 1, 1, 1, 1;")
        cons = ",".join(["=f"] * h + [str(i) for i in range(h)] + ["r"] * 4 + ["l"])
        for s in range(ksteps):
            accs = [k.v(f"llvm.extractvalue {acc}[{i}] : {st}") for i in range(h)]
            b_s = k.v(f"arith.addi {db}, {k.c(s * 2 * 1024 >> 4, 'i64')} : i64")
            ops = ", ".join(accs + regs[s] + [b_s])
            tys = ", ".join(["f32"] * h + ["i32"] * 4 + ["i64"])
            acc = k.v(f'llvm.inline_asm has_side_effects asm_dialect = att "{text}", "{cons}" {ops} : '
                      f"({tys}) -> {st}")
    k.op("nvvm.wgmma.commit.group.sync.aligned")
    k.op("nvvm.wgmma.wait.group.sync.aligned 0")
    for i in range(n // 2):
        x = k.v(f"llvm.extractvalue {acc}[{i}] : {st}")
        k.op(f"memref.store {x}, %d[{tid}, {k.c(i)}] : {d_t}")
    body = "\n        ".join(k.lines)
    smem = 1024 + (8192 + n * 128 if kind == "ss" else K_ * n * 2)
    return f"""
module attributes {{gpu.container_module}} {{
  func.func @main(%a: {a_t}, %b: {b_t}, %d: {d_t}) {{
    %c1 = arith.constant 1 : index
    %c128 = arith.constant 128 : index
    %smem = arith.constant {smem} : i32
    gpu.launch_func @k::@wg blocks in (%c1, %c1, %c1) threads in (%c128, %c1, %c1)
        dynamic_shared_memory_size %smem args(%a : {a_t}, %b : {b_t}, %d : {d_t})
    return
  }}
  gpu.module @k {{
    gpu.func @wg(%a: {a_t}, %b: {b_t}, %d: {d_t}) kernel {{
        {body}
        gpu.return
    }}
  }}
}}
"""


def run_module(text: str, kind: str, n: int, elt: str, ksteps: int, smem_base: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    K_ = 16 * ksteps
    a = rng.standard_normal((64, K_))
    b = rng.standard_normal((K_, n))
    if elt == "f16":
        a, b = a.astype(np.float16), b.astype(np.float16)
    else:
        a, b = emu.round_bf16(a), emu.round_bf16(b)
    bt = np.ascontiguousarray(b.T) if kind == "ss" else b
    d = np.zeros((128, n // 2), np.float32)
    with ir.Context(), ir.Location.unknown():
        prog = emu.Program(ir.Module.parse(text), smem_base=smem_base)
        stats = prog.run("main", a.copy(), bt.copy(), d, elts=[elt, elt, "f32"])
    ref = a.astype(np.float64) @ b.astype(np.float64)
    # Where the ISA puts D (written out here, not from ptx_isa): thread
    # t = 32 w + l, register i -> row 16 w + l/4 + 8 ((i/2) % 2),
    # column 8 (i/4) + 2 (l % 4) + i % 2.
    t = np.arange(128)[:, None]
    i = np.arange(n // 2)[None, :]
    rows = 16 * (t // 32) + (t % 32) // 4 + 8 * ((i // 2) % 2)
    cols = 8 * (i // 4) + 2 * (t % 4) + i % 2
    return d, ref[rows, cols], stats


KERNELS = [("ss", 64, "f16", 4), ("ss", 128, "bf16", 4), ("ss", 16, "f16", 4),
           ("rs", 64, "f16", 2), ("rs", 128, "bf16", 2)]


@pytest.mark.parametrize("kind,n,elt,ksteps", KERNELS, ids=[f"{k}-n{n}-{e}" for k, n, e, _ in KERNELS])
@pytest.mark.parametrize("smem_base", [0, 0x230])
def test_emulated_wgmma_matches_numpy(kind, n, elt, ksteps, smem_base):
    d, want, stats = run_module(wgmma_module(kind, n, elt, ksteps), kind, n, elt, ksteps, smem_base)
    np.testing.assert_allclose(d, want, rtol=1e-5, atol=1e-4)
    assert stats["wgmma"] == ksteps and stats["fence.proxy.async"] == 1


def _mutate(text: str, mutation: str) -> str:
    lines = text.split("\n")
    find = lambda s: next(i for i, l in enumerate(lines) if s in l)
    if mutation == "drop_proxy_fence":
        del lines[find("nvvm.fence.proxy")]
    elif mutation == "proxy_fence_before_wait":
        f = lines.pop(find("nvvm.fence.proxy"))
        lines.insert(find("device_async_wait"), f)
    elif mutation == "proxy_fence_after_barrier":
        f = lines.pop(find("nvvm.fence.proxy"))
        lines.insert(find("gpu.barrier") + 1, f)
    elif mutation == "drop_barrier":
        del lines[find("gpu.barrier")]
    elif mutation == "drop_wgmma_wait":
        del lines[find("wgmma.wait.group")]
    elif mutation == "drop_wgmma_commit":
        del lines[find("wgmma.commit.group")]
    elif mutation == "wait_one_more":
        lines[find("wgmma.wait.group")] = lines[find("wgmma.wait.group")].replace(" 0", " 1")
    elif mutation == "drop_wgmma_fence":
        del lines[find("wgmma.fence.aligned")]
    elif mutation == "wgmma_fence_too_early":
        f = lines.pop(find("wgmma.fence.aligned"))
        lines.insert(find("llvm.mlir.zero"), f)
    elif mutation in ("overwrite_after_wait", "overwrite_before_wait"):
        # One more cp.async into the first tile (element 0), after the
        # wgmma's wait_group (no barrier) or while the wgmma is in flight.
        view = lines[find("memref.view")].strip()
        name, vt = view.split(" = ")[0], view.split(" to ")[-1]
        src_t = re.search(r"%a: (memref<[^>]*>)", text).group(1)
        at = find("wgmma.wait.group") + 1 if mutation == "overwrite_after_wait" \
            else find("wgmma.commit.group")
        lines[at:at] = ["%w0 = arith.constant 0 : index",
                        f"%wcp = nvgpu.device_async_copy %a[%w0, %w0], {name}[%w0], 8 : {src_t} to {vt}"]
    elif mutation == "unknown_asm":
        i = find("llvm.inline_asm")
        lines[i] = lines[i].replace("wgmma.mma_async.sync.aligned", "wgmma.mma_async.sp.sync.aligned")
    return "\n".join(lines)


@pytest.mark.parametrize("kind,mutation,message", [
    ("ss", "drop_proxy_fence", "generic-proxy write not fenced before wgmma read"),
    ("ss", "proxy_fence_before_wait", "generic-proxy write not fenced before wgmma read"),
    ("ss", "proxy_fence_after_barrier", "fence.proxy.async not followed by a barrier"),
    ("ss", "drop_barrier", "written since the last barrier"),
    ("ss", "drop_wgmma_wait", "before a wgmma.wait_group retired it"),
    ("ss", "drop_wgmma_commit", "before a wgmma.wait_group retired it"),
    ("ss", "wait_one_more", "before a wgmma.wait_group retired it"),
    ("ss", "drop_wgmma_fence", "before any wgmma.fence"),
    ("ss", "wgmma_fence_too_early", "accumulator registers written by a non-wgmma op"),
    ("ss", "overwrite_before_wait", "overwrites shared data an unretired wgmma.mma_async reads"),
    ("ss", "overwrite_after_wait", "overwrites shared data another thread read since the last barrier"),
    ("rs", "wgmma_fence_too_early", "A-fragment registers written by a non-wgmma op"),
    ("rs", "drop_wgmma_wait", "before a wgmma.wait_group retired it"),
    ("rs", "unknown_asm", "inline asm not modeled"),
])
def test_emulator_catches_broken_wgmma_synchronization(kind, mutation, message):
    n, elt, ksteps = 64, "f16", (4 if kind == "ss" else 2)
    text = _mutate(wgmma_module(kind, n, elt, ksteps), mutation)
    with pytest.raises(emu.SimError, match=message):
        run_module(text, kind, n, elt, ksteps)


def test_pending_result_behaves_like_array_once_retired():
    tok = emu.WgToken(8)
    p = emu.Pending(np.array([1.0, 2.0], np.float32), tok)
    with pytest.raises(emu.SimError):
        np.asarray(p)
    with pytest.raises(emu.SimError):
        p * 2.0
    with pytest.raises(emu.SimError):
        np.float32(3.0) + p
    tok.retired = True
    np.testing.assert_array_equal(np.maximum(p, 1.5), [1.5, 2.0])
    np.testing.assert_array_equal((p * 2).astype(p.dtype), [2.0, 4.0])
    assert p.shape == (2,)

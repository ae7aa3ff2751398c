"""The emulator's sm_90a TMA loads and mbarriers (attncc.gpu_emulator: tma.py,
mbarrier.py, ptx_isa.py) against the CUDA driver's tensor-map rules
(cuTensorMapEncodeTiled) and the PTX ISA (cp.async.bulk.tensor tile mode,
mbarrier phases / tx-count, try_wait.parity): tensor-map fields and limits,
box coordinates with out-of-bound zero fill, the 128-byte swizzle of the
destination, all against hand-computed values; and hand-written kernels (TMA
box loads on one mbarrier, with the fences the CUDA Programming Guide asks
for, read back) run by the emulator, with single edits that break the
mbarrier protocol and must be caught.

The emulator imports only the `mlir` bindings and numpy (nothing else of
attncc; importing attncc.gpu_emulator still loads the attncc package)."""
import numpy as np
import pytest
from mlir import ir

from attncc import gpu_emulator as emu
from attncc.gpu_emulator import ptx_isa as isa


# --------------------------------------------------------------------------- tensor maps

def test_encode_tensor_map_fields():
    # A [batch 2, heads 3, seq 300, d 128] f16 tensor, [1, 1, 64, 64] boxes:
    # dims and box innermost first, byte strides of dims 1.. (row 256 B,
    # head 300 * 256 B, batch 3 * 300 * 256 B).
    enc = isa.encode_tensor_map([2, 3, 300, 128], [115200, 38400, 128, 1], 2, [1, 1, 64, 64])
    assert enc["global_dim"] == [128, 300, 3, 2]
    assert enc["global_strides"] == [256, 76800, 230400]
    assert enc["box_dim"] == [64, 64, 1, 1]
    assert isa.tma_box_bytes(enc) == 64 * 64 * 2


@pytest.mark.parametrize("sizes,strides,box,swizzle,message", [
    # 128 f16 = 256 bytes: wider than the 128-byte swizzle span.
    ([1, 1, 64, 128], [8192, 8192, 128, 1], [1, 1, 64, 128], "swizzle_128b", "swizzle span"),
    # 64-byte swizzle: at most 32 f16 in the inner box dimension.
    ([1, 1, 64, 64], [4096, 4096, 64, 1], [1, 1, 64, 64], "swizzle_64b", "swizzle span"),
    # Rows of 36 f16 = 72 bytes: not a multiple of 16.
    ([1, 1, 64, 36], [2304, 2304, 36, 1], [1, 1, 64, 32], "swizzle_128b", "multiples of 16"),
    # Box dims at most 256.
    ([1, 1, 1024, 64], [65536, 65536, 64, 1], [1, 1, 512, 64], "swizzle_128b", "boxDim"),
    # The inner box dimension must be a multiple of 16 bytes.
    ([1, 1, 64, 64], [4096, 4096, 64, 1], [1, 1, 64, 4], "none", "multiple of 16"),
    # The innermost dimension is contiguous.
    ([1, 1, 64, 64], [4096, 4096, 1, 64], [1, 1, 64, 64], "swizzle_128b", "contiguous"),
])
def test_encode_tensor_map_rejects(sizes, strides, box, swizzle, message):
    with pytest.raises(ValueError, match=message):
        isa.encode_tensor_map(sizes, strides, 2, box, swizzle)


def test_box_source_and_out_of_bound_fill():
    enc = isa.encode_tensor_map([2, 3, 100, 128], [38400, 12800, 128, 1], 2, [1, 1, 64, 64])
    # Box at (col 64, row 90, head 1, batch 0): rows 90..99 in the tensor,
    # 100..153 out of bounds; element (r, c) at 1 * 12800 + (90 + r) * 128 + 64 + c.
    src, ok = isa.tma_tile_source(enc, [64, 90, 1, 0])
    assert src.shape == ok.shape == (1, 1, 64, 64)
    assert ok[0, 0, :10].all() and not ok[0, 0, 10:].any()
    assert src[0, 0, 0, 0] == 12800 + 90 * 128 + 64
    assert src[0, 0, 9, 63] == 12800 + 99 * 128 + 127
    # Negative coordinates and columns past the end are out of bounds too:
    # (col 96, row -3): columns 128.. and rows -3..-1 are filled.
    src, ok = isa.tma_tile_source(enc, [96, -3, 0, 1])
    assert not ok[0, 0, :3].any() and not ok[0, 0, :, 32:].any()
    assert ok[0, 0, 3:, :32].all()
    assert src[0, 0, 3, 0] == 38400 + 0 * 128 + 96
    # The head / batch coordinates are checked as well.
    _, ok = isa.tma_tile_source(enc, [0, 0, 3, 0])
    assert not ok.any()


def test_box_destination_swizzle_hand_examples():
    enc = isa.encode_tensor_map([1, 1, 64, 64], [4096, 4096, 64, 1], 2, [1, 1, 64, 64])
    a = isa.tma_smem_address(enc, 0x2400)[0, 0]
    # Dense rows of 128 bytes; 16-byte chunk c // 8 of row r lands in chunk
    # (c // 8) ^ (r % 8) (address bits [4:6] ^= [7:9], 1024-byte aligned start).
    assert a[0, 0] == 0x2400
    assert a[0, 9] == 0x2400 + 16 + 2
    assert a[1, 0] == 0x2400 + 128 + 16          # row 1: chunk 0 -> 1
    assert a[1, 8] == 0x2400 + 128               # chunk 1 -> 0
    assert a[7, 63] == 0x2400 + 7 * 128 + 14     # chunk 7 -> 0, byte 14 kept
    assert a[8, 8] == 0x2400 + 1024 + 16         # row 8: pattern starts over
    assert a[13, 17] == 0x2400 + 13 * 128 + (2 ^ 5) * 16 + 2
    assert sorted(a.reshape(-1)) == list(range(0x2400, 0x2400 + 8192, 2))
    # SWIZZLE_128B needs a 1024-byte aligned destination; no swizzle 128.
    with pytest.raises(ValueError, match="1024-byte aligned"):
        isa.tma_smem_address(enc, 0x2400 + 512)
    plain = isa.encode_tensor_map([1, 1, 8, 64], [512, 512, 64, 1], 2, [1, 1, 8, 64], "none")
    assert isa.tma_smem_address(plain, 0x80)[0, 0, 1, 8] == 0x80 + 128 + 16
    with pytest.raises(ValueError, match="128-byte aligned"):
        isa.tma_smem_address(plain, 0x40)


# --------------------------------------------------------------------------- kernels

WG = "#gpu.address_space<workgroup>"
TMAP = (f"!nvgpu.tensormap.descriptor<tensor = memref<1x1x64x64xf16, {WG}>, "
        f"swizzle = swizzle_128b, l2promo = l2promo_128b, oob = zero, interleave = none>")
GROUP = f"!nvgpu.mbarrier.group<memorySpace = {WG}, num_barriers = 1>"
SRC = "memref<1x2x100x128xf16>"
OUT = "memref<2x4096xf32>"


def tma_module(coords: list[tuple[int, int]], mutation: str = "", src_t: str = SRC) -> str:
    """One block of 128 threads; thread 0 inits one mbarrier and, per round
    k, issues arrive.expect_tx(8192) and a [1, 1, 64, 64] box load of head
    1 at (column, row) = coords[k] into a 1024-byte aligned tile; all threads
    wait (parity k % 2) and copy the tile's raw shared memory (swizzled
    order) to out[k]; a gpu.barrier before the next round's load."""
    L, consts = [], {}

    def c(v: int) -> str:
        name = f"%c{'m' if v < 0 else ''}{abs(v)}"
        if name not in consts:
            consts[name] = L.append(f"{name} = arith.constant {v} : index")
        return name
    for v in (0, 1, 32, 64, 128, 1023, 8192, 10000000):
        c(v)
    L.append("%false = arith.constant false")
    L.append("%true = arith.constant true")
    L.append(f"%tm = builtin.unrealized_conversion_cast %arg0 : !llvm.ptr to {TMAP}")
    # The map was copied to global memory by the host: fence it before use.
    if mutation != "drop_tensormap_fence":
        L.append(f"nvgpu.tma.fence.descriptor %tm : {TMAP}")
    L.append("%tid = gpu.thread_id x")
    L.append(f"%dsm = gpu.dynamic_shared_memory : memref<?xi8, {WG}>")
    L.append(f"%base = memref.extract_aligned_pointer_as_index %dsm : memref<?xi8, {WG}> -> index")
    L.append("%neg = arith.subi %c0, %base : index")
    pad = "%c0" if mutation == "unaligned" else "%c1023"
    L.append(f"%pad = arith.andi %neg, {pad} : index")
    L.append(f"%view = memref.view %dsm[%pad][] : memref<?xi8, {WG}> to memref<64x64xf16, {WG}>")
    L.append(f"%box = memref.expand_shape %view [[0, 1, 2], [3]] output_shape [1, 1, 64, 64] : "
             f"memref<64x64xf16, {WG}> into memref<1x1x64x64xf16, {WG}>")
    L.append(f"%bars = nvgpu.mbarrier.create -> {GROUP}")
    L.append("%lead = arith.cmpi eq, %tid, %c0 : index")
    L.append(f"nvgpu.mbarrier.init %bars[%c0], %c1, predicate = %lead : {GROUP}")
    # The init made visible to the async proxy (the TMA's complete-tx).
    if mutation == "fence_mbarrier_init":
        L.append("nvvm.fence.mbarrier.init")
    elif mutation != "drop_init_fence":
        L.append("nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, "
                 "space = #nvvm.shared_space<cta>}")
    if mutation != "drop_init_barrier":
        L.append("gpu.barrier")
    for k, (col, row) in enumerate(coords):
        cc, cr = c(col), c(row)
        lead = "" if (mutation == "unpredicated_expect" and k == 0) else ", predicate = %lead"
        expect = f"nvgpu.mbarrier.arrive.expect_tx %bars[%c0], %c8192{lead} : {GROUP}"
        lead = "" if (mutation == "unpredicated_load" and k == 0) else ", predicate = %lead"
        load = (f"nvgpu.tma.async.load %tm[{cc}, {cr}, %c1, %c0], %bars[%c0] "
                f"to %box{lead} : {TMAP}, {GROUP} -> memref<1x1x64x64xf16, {WG}>")
        parity = "%true" if (k % 2) != (mutation == "wrong_parity" and k == len(coords) - 1) \
            else "%false"
        wait = f"nvgpu.mbarrier.try_wait.parity %bars[%c0], {parity}, %c10000000 : {GROUP}"
        if k and mutation != "drop_war_barrier":
            L.append("gpu.barrier")
        if k and mutation == "war_reads":
            L.append(f"%w{k} = memref.load %view[%c1, %c0] : memref<64x64xf16, {WG}>")
        if mutation == "wait_before_expect":
            L += [wait, expect, load]
        elif mutation == "wait_before_load":
            L += [expect, wait, load]
        elif mutation in ("drop_wait", "drop_wait_and_reads"):
            L += [expect, load]
        elif mutation in ("leader_waits", "leader_waits_then_barrier"):
            L += [expect, load, "scf.if %lead {", wait, "}"]
            if mutation == "leader_waits_then_barrier":
                L.append("gpu.barrier")
        elif mutation == "double_load":
            L += [expect, load, load, wait]
        else:
            L += [expect, load, wait]
        if mutation == "drop_wait_and_reads":
            continue
        # Raw tile element e = 128 i + tid (row e / 64, column e % 64 of the view).
        L.append(f"scf.for %i{k} = %c0 to %c32 step %c1 {{")
        L.append(f"  %e{k}a = arith.muli %i{k}, %c128 : index")
        L.append(f"  %e{k} = arith.addi %e{k}a, %tid : index")
        L.append(f"  %r{k} = arith.divui %e{k}, %c64 : index")
        L.append(f"  %q{k} = arith.remui %e{k}, %c64 : index")
        L.append(f"  %x{k} = memref.load %view[%r{k}, %q{k}] : memref<64x64xf16, {WG}>")
        L.append(f"  %y{k} = arith.extf %x{k} : f16 to f32")
        L.append(f"  memref.store %y{k}, %out[{c(k)}, %e{k}] : {OUT}")
        L.append("  scf.yield")
        L.append("}")
    body = "\n      ".join(L)
    return f"""
module attributes {{gpu.container_module}} {{
  func.func @main(%src: {src_t}, %out: {OUT}) {{
    %c1 = arith.constant 1 : index
    %c64 = arith.constant 64 : index
    %c128 = arith.constant 128 : index
    %smem = arith.constant 9216 : i32
    %cast = memref.cast %src : {src_t} to memref<*xf16>
    %d = nvgpu.tma.create.descriptor %cast box[%c1, %c1, %c64, %c64] : memref<*xf16> -> {TMAP}
    %p = builtin.unrealized_conversion_cast %d : {TMAP} to !llvm.ptr
    gpu.launch_func @k::@tma blocks in (%c1, %c1, %c1) threads in (%c128, %c1, %c1)
        dynamic_shared_memory_size %smem args(%p : !llvm.ptr, %out : {OUT})
    return
  }}
  gpu.module @k {{
    gpu.func @tma(%arg0: !llvm.ptr, %out: {OUT}) kernel {{
      {body}
      gpu.return
    }}
  }}
}}
"""


def source() -> np.ndarray:
    # Distinct finite f16 values (bit patterns 0x0400..), none of them 0.
    bits = np.arange(2 * 100 * 128, dtype=np.uint16) + 0x0400
    return bits.view(np.float16).reshape(1, 2, 100, 128)


def run(text: str, smem_base: int = 0, src=None):
    src = source() if src is None else src
    out = np.full((2, 4096), -1.0, np.float32)
    with ir.Context(), ir.Location.unknown():
        prog = emu.Program(ir.Module.parse(text), smem_base=smem_base)
        stats = prog.run("main", src.copy(), out, elts=["f16", "f32"])
    return src, out, stats


def expected_tile(src: np.ndarray, col: int, row: int) -> np.ndarray:
    """The raw shared tile written out by hand (not from ptx_isa): box
    element (r, c) of head 1 at (row + r, col + c), zero where that is
    outside the 100 x 128 tensor, at element r * 64 + ((c // 8) ^ (r % 8)) * 8
    + c % 8 of the 1024-byte aligned tile (128-byte swizzle)."""
    tile = np.zeros(4096, np.float32)
    for r in range(64):
        for c in range(64):
            gr, gc = row + r, col + c
            v = src[0, 1, gr, gc] if 0 <= gr < 100 and 0 <= gc < 128 else 0.0
            tile[r * 64 + ((c // 8) ^ (r % 8)) * 8 + c % 8] = v
    return tile


COORDS = [(0, 0), (64, 64), (96, -3)]


@pytest.mark.parametrize("smem_base", [0, 0x230])
@pytest.mark.parametrize("col,row", COORDS, ids=[f"col{c}-row{r}" for c, r in COORDS])
def test_tma_box_lands_swizzled_with_zero_fill(col, row, smem_base):
    src, out, stats = run(tma_module([(col, row)]), smem_base)
    np.testing.assert_array_equal(out[0], expected_tile(src, col, row))
    assert stats["tma"] == 1 and stats["mbarrier.wait"] == 1
    assert stats["tma.oob"] == int((expected_tile(src, col, row) == 0).sum())


def test_second_phase_reuses_the_tile_after_a_barrier():
    # Round 2: same barrier, parity 1 (its second phase), new box into the
    # tile all threads read in round 1 (gpu.barrier in between).
    src, out, stats = run(tma_module([(0, 0), (64, 64)]), 0x230)
    np.testing.assert_array_equal(out[0], expected_tile(src, 0, 0))
    np.testing.assert_array_equal(out[1], expected_tile(src, 64, 64))
    assert stats["tma"] == 2 and stats["mbarrier.wait"] == 2


def test_fence_mbarrier_init_also_publishes_the_init():
    src, out, _ = run(tma_module([(0, 0)], "fence_mbarrier_init"))
    np.testing.assert_array_equal(out[0], expected_tile(src, 0, 0))


def test_leader_wait_then_barrier_publishes_the_data():
    # Only thread 0 waits, then a gpu.barrier orders its observation of the
    # phase before the other threads' reads: correct.
    src, out, _ = run(tma_module([(0, 0)], "leader_waits_then_barrier"))
    np.testing.assert_array_equal(out[0], expected_tile(src, 0, 0))


@pytest.mark.parametrize("mutation,rounds,message", [
    ("drop_wait", 1, "memref.load reads shared memory a TMA load has not finished writing"),
    ("wrong_parity", 1, "memref.load reads shared memory a TMA load has not finished writing"),
    ("wrong_parity", 2, "memref.load reads shared memory a TMA load has not finished writing"),
    ("wait_before_expect", 1, "deadlock: .*arrivals missing"),
    ("wait_before_load", 1, "deadlock: .*expects more bytes"),
    ("leader_waits", 1, "reads TMA-loaded data without having waited on its mbarrier"),
    ("drop_init_barrier", 1, "before a barrier made mbarrier.init visible"),
    ("double_load", 1, "another copy is still writing"),
    ("unpredicated_load", 1, "another copy is still writing"),
    ("unpredicated_expect", 1, "more arrivals than the mbarrier's count"),
    ("drop_war_barrier", 2, "next phase of mbarrier 0 while thread.* waited on its previous "
                            "phase since the last barrier"),
    ("war_reads", 2, "TMA load overwrites shared data a thread read since the last barrier"),
    ("drop_wait_and_reads", 1, "exits with TMA loads in flight"),
    ("unaligned", 1, "not 1024-byte aligned"),
    ("drop_init_fence", 1, "whose mbarrier.init .* no fence.proxy.async"),
    ("drop_tensormap_fence", 1, "without a fence.proxy.tensormap::generic.acquire"),
])
def test_emulator_catches_broken_mbarrier_protocol(mutation, rounds, message):
    with pytest.raises(emu.SimError, match=message):
        run(tma_module(COORDS[:rounds], mutation), 0x230)


def test_tensor_map_checks():
    # cuTensorMapEncodeTiled limits: rows of 100 f16 (200 bytes) are not a
    # multiple of 16 bytes apart.
    odd = tma_module([(0, 0)], src_t="memref<1x2x100x100xf16>")
    with pytest.raises(emu.SimError,
                       match="cuTensorMapEncodeTiled would fail.*multiples of 16"):
        run(odd, src=np.zeros((1, 2, 100, 100), np.float16))
    # The kernel's descriptor type must be the one the host made.
    text = tma_module([(0, 0)])
    other = text.replace(TMAP, TMAP.replace("l2promo_128b", "none"), 2)
    with pytest.raises(emu.SimError, match="does not match the descriptor type"):
        run(other)

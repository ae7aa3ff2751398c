//===- Passes.td - attn passes -----------------------------*- tablegen -*-===//
#ifndef ATTN_PASSES_TD
#define ATTN_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnFuse : Pass<"attn-fuse", "func::FuncOp"> {
  let summary = "Fuse matmul -> scale -> mask -> softmax -> matmul into attn.attention";
  let description = [{
    Matches the graph-level chain users write,
    `softmax(mask(scale(Q K^T))) V`, in the orders seen in real models
    (scale before or after the mask, scale applied to Q first, softmax
    upcast to f32 and cast back, GQA/MQA expressed with a broadcast K/V) and
    replaces it with one `attn.attention`. Graphs that do not match are left
    unchanged.

    Example (test/Passes/attn-fuse.mlir):

    ```mlir
    // Before
    %s = attn.matmul %q, %k transpose_rhs : tensor<1x8x128x64xf16>, tensor<1x8x256x64xf16> -> tensor<1x8x128x256xf16>
    %t = attn.scale %s by 0.125 : tensor<1x8x128x256xf16>
    %p = attn.softmax %t axis 3 : tensor<1x8x128x256xf16>
    %o = attn.matmul %p, %v : tensor<1x8x128x256xf16>, tensor<1x8x256x64xf16> -> tensor<1x8x128x64xf16>

    // After
    %o = attn.attention %q, %k, %v scale 1.250000e-01 mask none kv_group 1
        : tensor<1x8x128x64xf16>, tensor<1x8x256x64xf16>, tensor<1x8x256x64xf16> -> tensor<1x8x128x64xf16>
    ```
  }];
  let dependentDialects = ["::mlir::attn::AttnDialect"];
}

def AttnTile : Pass<"attn-tile", "ModuleOp"> {
  let summary = "Lower attn.attention to the tile-level program (online softmax)";
  let description = [{
    Rewrites every function whose body is one `attn.attention` on its
    arguments into a destination-passing kernel on memrefs (the result becomes
    a trailing `out` argument): a `scf.parallel` grid over (batch, query head,
    query block) and, inside, an `scf.for` over KV blocks (tagged
    `attn.kv_loop`) with an online softmax on tile buffers. Causal and
    sliding-window masks narrow the KV loop bounds so that fully masked blocks
    are never visited, and element masks (`attn.tile_mask`) run only on blocks
    that straddle the diagonal or the end of the keys. Sequence lengths need
    not be multiples of the block sizes, and may be dynamic.

    `bf16-pairs` (the CPU's AMX class) keeps bf16 inputs in bf16 tiles:
    `%qt` bf16 `[BM, D]` (unscaled; Q K^T's `scale` scales the f32 scores), K
    copied (or, paged, gathered) `transposed pairs` into `[D / 2, 2 BN]`, V
    `pairs` into `[BN / 2, 2 Dv]`, both matmuls `pairs`, and the
    probabilities rounded into a bf16 `%p` by `attn.tile_convert` after the
    softmax (test/Passes/attn-tile-bf16-pairs.mlir).

    `lse` adds a trailing `lse: memref<B x H x L x f32>` argument written by
    `attn.tile_lse` (each row's log-sum-exp). `split-kv` (flash decoding)
    adds `lse` and two f32 workspace arguments, `part: [P * B, H, L, Dv]` and
    `part_lse: [P * B, H, L]`; the split count `P = dim(part, 0) / B` is read
    at run time, so one kernel serves every split count and length. The grid
    gets a fourth dimension over splits: split `s` runs the KV loop over its
    chunk of `ceil(blocks / P)` KV blocks of the row block's range and stores
    its normalized partial output and LSE at batch `s * B + b`; a second grid
    (`attn.combine`) merges them with `attn.tile_combine`. Sinks join only
    the combine's denominator (test/Passes/attn-tile-split-kv.mlir).

    Example (`block-m=64 block-n=64`, then canonicalize; constants, types
    and the deallocs elided; test/Passes/attn-tile.mlir):

    ```mlir
    // Before
    func.func @attn(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>,
                    %v: tensor<1x8x128x64xf16>) -> tensor<1x8x128x64xf16> {
      %0 = attn.attention %q, %k, %v scale 0.125 mask causal kv_group 1 : ...
      return %0 : tensor<1x8x128x64xf16>
    }

    // After
    func.func @attn(%q: memref<1x8x128x64xf16>, %k: memref<1x8x128x64xf16>,
                    %v: memref<1x8x128x64xf16>, %out: memref<1x8x128x64xf16>) {
      scf.parallel (%h, %mb) = (%c0, %c0) to (%c8, %c2) step (%c1, %c1) {
        %m0 = arith.muli %mb, %c64 : index
        %qt = memref.alloc() : memref<64x64xf32>    // also %s, %acc, %max, %sum, %kt, %vt
        linalg.fill ins(%zero : f32) outs(%acc : memref<64x64xf32>)   // %max: -inf, %sum: 0
        attn.copy_tile %q[%c0, %h, %m0] to %qt scale 1.250000e-01 valid %vq : ...
        %end = arith.minsi %m0_plus_64, %c128 : index                // causal: stop at the diagonal
        scf.for %n0 = %c0 to %end step %c64 {
          attn.copy_tile %k[%c0, %h, %n0] to %kt transposed valid %vk : ...
          attn.copy_tile %v[%c0, %h, %n0] to %vt valid %vk : ...
          attn.tile_matmul %qt, %kt into %s : ...
          scf.if %boundary {
            attn.tile_mask %s rows %m0 cols %n0 valid %vk causal : memref<64x64xf32>
          }
          attn.tile_softmax %s, %max, %sum, %acc : ...
          attn.tile_matmul %s, %vt into %acc accumulate : ...
        } {attn.kv_loop}
        attn.tile_store %acc, %sum to %out[%c0, %h, %m0] valid %vq : ...
        scf.reduce
      }
      return
    }
    ```
  }];
  let options = [
    Option<"blockM", "block-m", "int64_t", "64", "query rows per block">,
    Option<"blockN", "block-n", "int64_t", "64", "keys per KV block">,
    Option<"lse", "lse", "bool", "false",
           "also write each row's log-sum-exp to a trailing `lse: memref<BxHxLxf32>` argument">,
    Option<"splitKv", "split-kv", "bool", "false",
           "split the KV range (flash decoding): a grid dimension over splits writing partial "
           "outputs and LSEs into workspace arguments, then a combine grid (implies lse)">,
    Option<"kvInPlace", "kv-in-place", "bool", "false",
           "read K and V where they are stored instead of copying them into tile buffers: "
           "Q.K^T as a transposed tile_matmul on a view of K's rows, P.V on a view of V's "
           "(the CPU's decode form); for attn.ragged_attention, views of packed K/V and of "
           "pages of a static power-of-two size, K rows gathered untransposed from other "
           "pages">,
    Option<"stridedKv", "strided-kv", "bool", "false",
           "attn.attention's K and V arguments as memrefs of any strides but a unit innermost "
           "one (the CPU, for K/V views such as MLA's V = K[..., :Dv] or a transposed "
           "[B, L, H, D] projection, which then run without a copy; dense K/V keep dense "
           "arguments, whose constant row strides made the packing copies 8-10% faster); "
           "the GPU's copies take dense K/V only">,
    Option<"cpuTasks", "cpu-tasks", "int64_t", "0",
           "run the grid as at most this many tasks of consecutive grid points, the count "
           "chosen at run time from the K/V work so that a small call is one task (run inline "
           "by async-parallel-for, no thread-pool wake-up); 0: one scf.parallel point per "
           "grid point (attn.attention only)">,
    Option<"minTaskWork", "min-task-work", "int64_t", "1048576",
           "with cpu-tasks: the work of one task, in K elements read (x block-m / 4)">,
    Option<"bf16Pairs", "bf16-pairs", "bool", "false",
           "bf16 Q/K/V: bf16 tile buffers, K and V copied pair-packed and both matmuls "
           "`pairs` (bf16 dot products, AMX on the CPU), P rounded to bf16 by "
           "attn.tile_convert; only where the shapes fit the AMX tiles (head dims multiples "
           "of 32, block-m a multiple of 16, block-n of 32, not kv-in-place); otherwise the "
           "f32 tiles">,
    Option<"kvInPlacePairs", "kv-in-place-pairs", "bool", "false",
           "with kv-in-place and bf16 Q/K/V (head dims multiples of 32 and 16): Q kept in a "
           "bf16 tile (unscaled), Q.K^T `transposed pairs` on K's rows with the scale on the "
           "f32 scores, P rounded to bf16 by attn.tile_convert and P.V `pairs` on V's rows "
           "(the CPU's AVX-512-BF16 class: vdpbf16ps without widening K/V; paged: page views "
           "of at least 2 rows, or rows gathered into bf16 tiles)">,
    Option<"headsInner", "heads-inner", "bool", "false",
           "attn.ragged_attention with kv-in-place (decode): one grid point per work item "
           "instead of one per (work item, head); its heads' row tiles side by side and a loop "
           "over the heads inside the KV loop, so each KV block's rows of every head are read "
           "together (the CPU's form for K/V whose heads interleave by row: NHD pages, packed "
           "[tokens, heads, D] K/V)">,
    Option<"skipMaskedRows", "skip-masked-rows", "bool", "false",
           "in KV blocks that reach past the diagonal (causal, or a window's right side), run "
           "the block's score, softmax and P.V ops on views of the row tiles from the first "
           "row (in multiples of 16) that sees a key of the block: the rows above it are fully "
           "masked there (the CPU; not with ALiBi, a bias, bf16 pairs or kv-in-place)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect"];
}

def AttnPipeline : Pass<"attn-pipeline", "func::FuncOp"> {
  let summary = "Multi-buffer the K/V tile copies and software-pipeline the KV loop";
  let description = [{
    For each `attn.kv_loop`, gives the K/V tile buffers `num-stages` slots
    (upstream `memref::multiBuffer`) and splits the loop with upstream
    `scf::pipelineForLoop` into prologue, steady state and epilogue: the
    copies of iteration `i + num-stages - 1` are issued in the same steady-state
    iteration as the compute of iteration `i`. Dynamic trip counts (causal
    bounds) and trip counts below the stage count are handled by predicating
    the copies. `num-stages=1` leaves the loop alone. Loops with
    `attn.gather_tile` (paged KV caches) are pipelined the same way only
    with `gathers=true` (the GPU pipeline sets it; on the CPU, bf16 paged
    decode at page size 1 ran 12 ms pipelined against 5.9 ms not).

    Example (`num-stages=2`, simplified: index arithmetic and predicates
    elided; test/Passes/attn-pipeline.mlir):

    ```mlir
    // Before
    %kt = memref.alloc() : memref<64x64xf32>
    scf.for %n0 = %c0 to %end step %c64 {
      attn.copy_tile %k[%b, %h, %n0] to %kt transposed valid %vk : ...
      attn.tile_matmul %qt, %kt into %s : ...
      ...
    } {attn.kv_loop}

    // After
    #map = affine_map<(d0) -> ((d0 floordiv 64) mod 2)>
    %kt = memref.alloc() : memref<2x64x64xf32>
    %k0 = memref.subview %kt[%slot0, 0, 0] [1, 64, 64] [1, 1, 1] : ...
    scf.if %has0 {
      attn.copy_tile %k[%b, %h, %c0] to %k0 transposed valid %vk0
          {attn.iteration = 0 : i64, attn.part = "prologue"} : ...
    }
    %r:3 = scf.for %n0 = %c0 to %end_minus_64 step %c64 iter_args(%cur = %k0, ...) {
      %next = memref.subview %kt[%slot_next, 0, 0] [1, 64, 64] [1, 1, 1] : ...
      attn.copy_tile %k[%b, %h, %n0_plus_64] to %next transposed valid %vk1
          {attn.iteration = 0 : i64, attn.part = "kernel"} : ...
      attn.tile_matmul %qt, %cur into %s {attn.iteration = 0 : i64, attn.part = "kernel"} : ...
      ...
      scf.yield %next, ...
    } {attn.kv_loop, attn.num_stages = 2 : i64}
    scf.if %has_last {
      attn.tile_matmul %qt, %r#0 into %s {attn.iteration = 0 : i64, attn.part = "epilogue"} : ...
      ...
    }
    ```
  }];
  let options = [
    Option<"numStages", "num-stages", "int64_t", "2", "pipeline depth (K/V buffers in flight)">,
    Option<"gathers", "gathers", "bool", "false",
           "also multi-buffer attn.gather_tile (paged KV) loops: the GPU's cp.async gathers; "
           "on the CPU a gathered block issued an iteration ahead cost paged decode 2x">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::affine::AffineDialect"];
}

def AttnUnroll : Pass<"attn-unroll", "func::FuncOp"> {
  let summary = "Unroll the chosen attn loops by a factor (upstream loopUnrollByFactor)";
  let description = [{
    Unrolls every `scf.for` tagged with the chosen loop tag (`kv`: the KV
    loop, i.e. the pipelined steady state when attn-pipeline ran first) by
    `factor`, with upstream `loopUnrollByFactor`, which adds a remainder loop
    for trip counts that are not multiples of the factor.

    Example (`factor=2`, 7 iterations: the one left over is a remainder
    without a loop; test/Passes/attn-unroll.mlir):

    ```mlir
    // Before
    scf.for %i = %c0 to %c7 step %c1 {
      attn.tile_softmax %s, %m, %l, %a : ...
    } {attn.kv_loop}

    // After
    scf.for %i = %c0 to %c6 step %c2 {
      attn.tile_softmax %s, %m, %l, %a {attn.unrolled_copy = 0 : i64} : ...
      attn.tile_softmax %s, %m, %l, %a {attn.unrolled_copy = 1 : i64} : ...
    } {attn.kv_loop}
    attn.tile_softmax %s, %m, %l, %a : ...
    ```
  }];
  let options = [
    Option<"factor", "factor", "int64_t", "1", "unroll factor (1 = no unrolling)">,
    Option<"loop", "loop", "std::string", "\"kv\"", "which loops: kv">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect"];
}

def AttnLowerToCpu : Pass<"attn-lower-to-cpu", "ModuleOp"> {
  let summary = "Lower tile-level attn ops to vector/scf/memref for the CPU";
  let description = [{
    Lowers the tile ops to wide vector code: register-blocked FMA
    micro-kernels for `tile_matmul`, vector reductions and a polynomial `exp`
    for `tile_softmax`, vectorized copies/conversions. The result contains no
    attn ops and goes through upstream conversions to the LLVM dialect.
    Functions that held tile ops get `attn.arg_types` (their argument types),
    which the runtime reads after the LLVM conversion to check its tensors.

    Example (`vector-width=16 micro-rows=6 micro-vectors=4`, then
    canonicalize; test/Passes/attn-lower-to-cpu.mlir):

    ```mlir
    // Before
    attn.tile_matmul %a, %b into %c : memref<6x64xf32>, memref<64x64xf32>, memref<6x64xf32>

    // After: 6 rows x 4 vectors of c in 24 accumulators through the K loop
    %r:24 = scf.for %k = %c0 to %c64 step %c1 iter_args(%c00 = %zero, ...) -> (vector<16xf32>, ...) {
      %b0 = vector.load %b[%k, %c0] : memref<64x64xf32>, vector<16xf32>   // and %c16, %c32, %c48
      %a0 = memref.load %a[%c0, %k] : memref<6x64xf32>
      %a0v = vector.broadcast %a0 : f32 to vector<16xf32>
      %n00 = vector.fma %a0v, %b0, %c00 : vector<16xf32>                  // 24 fmas
      ...
      scf.yield %n00, ... : vector<16xf32>, ...
    }
    vector.store %r#0, %c[%c0, %c0] : memref<6x64xf32>, vector<16xf32>    // 24 stores
    ```

    The vector width and the micro-kernel's register block follow the target
    ISA (chosen by python/attncc/targets/cpu.py from the host as LLVM sees it,
    or forced): AVX2 has 16 vector registers of 8 f32 lanes, so a 6 x 2-vector
    block (12 accumulators); AVX-512 and NEON have 32, so 6 x 4. The choice is
    recorded on the module:

    ```mlir
    module attributes {attn.cpu = {isa = "x86-64-v3", micro_kernel = array<i64: 6, 2>,
                                   vector_width = 8 : i64}} { ... }
    ```
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes per vector (8 = AVX2, 16 = AVX-512, 4 = NEON)">,
    Option<"microRows", "micro-rows", "int64_t", "6",
           "rows of the tile_matmul register block (broadcasts of a)">,
    Option<"microVectors", "micro-vectors", "int64_t", "4",
           "vectors per row of the tile_matmul register block (loads of b); "
           "micro-rows x micro-vectors accumulators must fit the vector registers">,
    Option<"isaName", "isa", "std::string", "\"\"",
           "name of the ISA class the options were chosen for (x86-64-v3, "
           "x86-64-v4, aarch64); recorded in the module's `attn.cpu` attribute">,
    Option<"amx", "amx", "bool", "false",
           "the target has AMX (amx-tile, amx-bf16): `pairs` tile_matmuls become amx "
           "tile ops (without it or bf16-dot they are refused)">,
    Option<"bf16Dot", "bf16-dot", "bool", "false",
           "the target has AVX-512-BF16 and VBMI: `pairs` tile_matmuls become vdpbf16ps "
           "register blocks (x86vector.avx512.dot; `amx` takes precedence); fp8 rows read "
           "in place are widened by vpermi2b byte tables">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::vector::VectorDialect",
                           "::mlir::math::MathDialect", "::mlir::amx::AMXDialect",
                           "::mlir::x86vector::X86VectorDialect",
                           "::mlir::LLVM::LLVMDialect"];
}

def AttnParallelToOmp : Pass<"attn-parallel-to-omp", "ModuleOp"> {
  let summary = "Run a CPU kernel's grids on the OpenMP team that calls it (torch's own pool)";
  let description = [{
    For CPU kernels run on several threads. Every `scf.parallel` that is not
    nested in another becomes a loop over its (linearized) points taken
    round-robin by the calling thread: point `tid`, `tid + nt`, ... where
    `tid` and `nt` are two `index` arguments appended to the function (the
    thread's number in its team and the team's size). The runtime calls the
    kernel once from every thread of an OpenMP parallel region of the OpenMP
    runtime torch already loaded (`GOMP_parallel`; docs/cpu-backend.md,
    "Threads"), so the kernel runs on torch's own threads: no second pool,
    no wake-up of sleeping workers. A grid after another first waits for the
    whole team (`func.call @GOMP_barrier()`), so the combine of split-KV reads
    what every thread wrote. Grids must sit in control flow that every thread
    takes alike (bounds and conditions from sizes, as attn-tile emits them).
    Functions with `attn.arg_types` get `index, index` appended to it.

    Example (test/Passes/attn-parallel-to-omp.mlir):

    ```mlir
    // Before
    func.func @k(%a: memref<?xf32>) {
      scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c8) step (%c1, %c1) { ... }
      scf.parallel (%i) = (%c0) to (%n) step (%c1) { ... }
    }

    // After
    func.func @k(%a: memref<?xf32>, %tid: index, %nt: index) {
      %points = arith.muli %n, %c8 : index
      scf.for %p = %tid to %points step %nt {
        %j = arith.remui %p, %c8 : index
        %i = arith.divui %p, %c8 : index
        ...
      }
      func.call @GOMP_barrier() : () -> ()
      scf.for %p = %tid to %n step %nt { ... }
    }
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::func::FuncDialect"];
}

def AttnLowerToGpu : Pass<"attn-lower-to-gpu", "ModuleOp"> {
  let summary = "Map the pipelined tile program onto a GPU kernel (mma.sync, ldmatrix, cp.async)";
  let description = [{
    Lowers every function holding the tile program (attn-tile, attn-pipeline,
    attn-unroll) to a host function with one `gpu.launch`:
      * one thread block per grid point: the `scf.parallel` grid over
        (batch, head, query block) maps to block ids (last dimension to x),
        with `32 * num-warps` threads per block;
      * warp `w` owns query rows `[16w, 16w + 16)` of the block (block-m must
        be `16 * num-warps`); Q is copied once to shared memory and kept in
        registers as m16n8k16 A fragments (`nvgpu.ldmatrix`);
      * the K/V tile buffers (with the `num-stages` slots attn-pipeline gave
        them) live in dynamic shared memory as `[block-n, head_dim]` f16/bf16
        tiles with an XOR swizzle (chunk ^ row % 8) against bank conflicts,
        filled by `nvgpu.device_async_copy` (cp.async, 16 bytes, zero-filled
        past the end of the keys);
      * the pipelined structure places the async groups: one
        `device_async_create_group` per pipelined iteration's copies, a
        `gpu.barrier` before the steady state overwrites a slot, and
        `device_async_wait` (keeping the copies of later iterations in
        flight) plus `gpu.barrier` before the compute that reads a slot;
      * Q.K^T and P.V run on tensor cores (`nvgpu.mma.sync` m16n8k16 for f16,
        `nvvm.mma.sync` for bf16, which the nvgpu lowering of this MLIR
        rejects), scores and the output accumulator stay in registers
        (fully unrolled private buffers that LLVM promotes to registers), and
        P is reused from the score accumulators as the A operand of P.V;
      * the online softmax keeps the row max / sum of the two rows a thread
        owns, reduced across the 4 lanes sharing a row with `gpu.shuffle xor`,
        and uses `exp2` with log2(e) folded in.
    On sm_90a with whole warpgroups (num-warps a multiple of 4), `mma=auto`
    (the default) uses the Hopper warpgroup instructions instead:
      * Q and the K/V slots are stored in the canonical 128-byte-swizzled
        layout of wgmma (64-column panels of 128-byte rows, chunk ^ row % 8);
      * Q.K^T is `nvvm.wgmma.mma_async` m64nBNk16 with both operands read
        from shared memory through matrix descriptors (K-major);
      * P.V is wgmma m64nDk16 with A (P) from registers and V through a
        transposed (MN-major) descriptor: upstream has no op for the
        register-A form, so it is one `llvm.inline_asm` wgmma;
      * each matmul is fenced (`wgmma.fence`), committed and waited for
        before the softmax reads its result, and the copies into shared
        memory are made visible to the async proxy with
        `fence.proxy.async.shared::cta` before the barrier;
      * with `tma=true` (the default) the tiles arrive by TMA
        (`nvgpu.tma.async.load` of [rows, 64] boxes with the 128-byte
        swizzle, from descriptors made by `nvgpu.tma.create.descriptor` in
        the host function) on one mbarrier per pipeline slot plus one for Q:
        thread 0 issues `mbarrier.arrive.expect_tx` and the boxes of an
        iteration, every thread waits with `mbarrier.try_wait.parity` right
        before the Q.K^T that reads the slot; `tma=false` keeps cp.async;
      * the accumulator fragment of wgmma per warp equals that of mma.sync,
        so masks, softmax and stores are shared with the sm_80 kernel.
    f32 inputs run on tensor cores as TF32 (mma.sync m16n8k8 .tf32 on
    operands rounded with cvt.rna.tf32.f32; fragments by plain shared loads,
    ldmatrix being b16 only), on sm_90a too (wgmma's .tf32 needs a K-major V,
    which the [keys, d] tile is not: mma=wgmma with f32 is an error);
    `input-precision=tf32x3` splits each operand into two TF32 parts and runs
    three MMAs per product (about fp32 accuracy). Inputs must be f16, bf16
    or f32 with head dims 64 or 128; other element types, head dims or block
    shapes are rejected with a diagnostic. The layout
    arithmetic lives in passes/GpuLayout.h.

    Example (the attn-tile example after `attn-pipeline{num-stages=2}`,
    `attn-lower-to-gpu{num-warps=4}`, canonicalize; heavily elided;
    test/Passes/attn-lower-to-gpu.mlir):

    ```mlir
    // Before: the tile program in an scf.parallel grid (see attn-tile)

    // After
    module attributes {gpu.container_module} {
      func.func @attn(%q: memref<1x8x128x64xf16>, ...)
          attributes {attn.gpu_args = {k = 1 : i64, out = 3 : i64, q = 0 : i64, v = 2 : i64}} {
        gpu.launch_func @attn_kernel::@attn_kernel blocks in (%c2, %c8, %c1)
            threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c40960_i32 args(%q : ..., ...)
        return
      }
      gpu.module @attn_kernel {
        gpu.func @attn_kernel(%q: memref<1x8x128x64xf16>, ...) kernel attributes {..., nvvm.minctasm = 1 : i32} {
          %smem = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
          %qs = memref.view %smem[%c0][] : ... to memref<64x64xf16, #gpu.address_space<workgroup>>
          %ks = memref.view %smem[%c8192][] : ... to memref<2x64x64xf16, #gpu.address_space<workgroup>>
          %t0 = nvgpu.device_async_copy %q[%c0, %block_id_y, %row, %col], %qs[%srow, %scol], 8, %n {bypassL1} : ...
          %g = nvgpu.device_async_create_group %t0, ...
          nvgpu.device_async_wait %g {numGroups = 1 : i32}
          gpu.barrier
          %a = nvgpu.ldmatrix %qs[%r, %c] {numTiles = 4 : i32, transpose = false} : ... -> vector<4x2xf16>
          scf.for %n0 = %c0 to %end step %c64 iter_args(...) {
            gpu.barrier
            %t1 = nvgpu.device_async_copy %k[...], %knext[...], 8, %n {bypassL1} : ...
            %g1 = nvgpu.device_async_create_group %t1, ...
            nvgpu.device_async_wait %g {numGroups = 1 : i32}
            gpu.barrier
            %bk = nvgpu.ldmatrix %kcur[%r2, %c2] {numTiles = 4 : i32, transpose = false} : ...
            %s = nvgpu.mma.sync(%a, %bk0, %zero) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
            ...  // mask selects, row max / sum with gpu.shuffle xor, llvm.nvvm.ex2.approx.ftz.f, P.V mma.sync
          }
          ...  // normalized vector.store of the output rows
          gpu.return
        }
      }
    }
    ```
  }];
  let options = [
    Option<"chip", "chip", "std::string", "\"sm_80\"", "target GPU: sm_80 or sm_90a">,
    Option<"mma", "mma", "std::string", "\"auto\"",
           "tensor-core instructions: mma-sync, wgmma (sm_90a, num-warps a multiple of 4) or auto (wgmma where it applies)">,
    Option<"tma", "tma", "bool", "true",
           "with wgmma, load Q/K/V tiles with TMA on mbarriers (false: cp.async)">,
    Option<"numWarps", "num-warps", "int64_t", "4", "warps per thread block (block-m = 16 * num-warps)">,
    Option<"inputPrecision", "input-precision", "std::string", "\"tf32\"",
           "f32 inputs: tf32 (one TF32 MMA per product) or tf32x3 (3xTF32 split, about fp32 accuracy); ignored for f16/bf16">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::vector::VectorDialect",
                           "::mlir::math::MathDialect", "::mlir::gpu::GPUDialect",
                           "::mlir::nvgpu::NVGPUDialect", "::mlir::NVVM::NVVMDialect",
                           "::mlir::LLVM::LLVMDialect"];
}

def AttnTestGpuLayout : Pass<"attn-test-gpu-layout", "ModuleOp"> {
  let summary = "Test only: print the GPU layout tables of passes/GpuLayout.h as JSON";
  let description = [{
    Evaluates the lane/fragment/shared-memory layout functions that
    attn-lower-to-gpu emits as IR (passes/GpuLayout.h) on integers and prints
    them as one JSON object on stdout, for test/python/test_gpu_layout.py,
    which checks them against the PTX ISA fragment tables. The module is left
    unchanged.
  }];
}

#endif // ATTN_PASSES_TD

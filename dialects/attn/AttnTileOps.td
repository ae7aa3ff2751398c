//===- AttnTileOps.td - tile-level attn ops ----------------*- tablegen -*-===//
//
// The tile-level program that attn-tile produces and both targets lower.
// Tiles live in memref buffers (CPU: stack/heap; GPU: shared memory or
// registers), so that attn-pipeline can multi-buffer the K/V copies with
// upstream memref::multiBuffer and split the KV loop with
// scf::pipelineForLoop. All arithmetic on tiles is f32.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_TILE_OPS_TD
#define ATTN_TILE_OPS_TD

include "dialects/attn/AttnDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Attn_Tensor4D : MemRefRankOf<[AnyFloat], [4]>;
def Attn_AnyBias : MemRefOf<[AnyFloat]>;
def Attn_Tile2D : MemRefRankOf<[AnyFloat], [2]>;
def Attn_Tile1D : MemRefRankOf<[F32], [1]>;

def Attn_CopyTileOp : Attn_Op<"copy_tile"> {
  let summary = "copies rows of a [B, H, L, D] tensor into a tile buffer";
  let description = [{
    For `r` in `[0, R)`: `dest[r, :] = r < valid ? source[batch, head, row + r, :] * scale : 0`
    converted to the buffer's element type, where `R` is the tile's row count.
    With `transposed`, the buffer is `[D, R]` and row `r` lands in column `r`
    (the CPU layout of K for Q K^T). Rows at or past `valid` are zero, so tail
    blocks need no special casing downstream. This is the op that
    attn-pipeline schedules early (the "async load"): on the GPU it becomes
    cp.async or TMA into shared memory, on the CPU a packing copy.

    With `pairs` (bf16 source and buffer, no scale), the buffer holds the
    rows in the pair-packed ("VNNI") layout that bf16 dot-product
    instructions (AMX `tdpbf16ps`) take as their `b` operand, two consecutive
    contraction indices side by side: without `transposed` (V for P V) the
    buffer is `[R / 2, 2 D]` and `dest[t, 2 d + e] = src row 2 t + e, column
    d`; with `transposed` (K for Q K^T) it is `[D / 2, 2 R]` and
    `dest[t, 2 r + e] = src row r, column 2 t + e` (K's rows as 32-bit words,
    transposed).

    Example:
    ```mlir
    attn.copy_tile %k[%b, %h, %n0] to %kbuf transposed valid %n
        : memref<1x8x1000x64xf16>, memref<64x64xf32>
    attn.copy_tile %v[%b, %h, %n0] to %vbuf pairs valid %n
        : memref<1x8x1000x64xbf16>, memref<32x128xbf16>
    ```
  }];
  let arguments = (ins Arg<Attn_Tensor4D, "", [MemRead]>:$source, Index:$batch, Index:$head,
                       Index:$row, Index:$valid, Arg<Attn_Tile2D, "", [MemWrite]>:$dest,
                       UnitAttr:$transposed, OptionalAttr<F64Attr>:$scale, UnitAttr:$pairs);
  let assemblyFormat = [{
    $source `[` $batch `,` $head `,` $row `]` `to` $dest (`transposed` $transposed^)?
    (`pairs` $pairs^)? (`scale` $scale^)? `valid` $valid attr-dict `:` type($source) `,`
    type($dest)
  }];
  let hasVerifier = 1;
}

def Attn_TileMatmulOp : Attn_Op<"tile_matmul"> {
  let summary = "c = a * b (or c += a * b) on tile buffers";
  let description = [{
    `a: [M, K]`, `b: [K, N]`, `c: [M, N]`, all f32 math. With `accumulate`,
    the product is added to `c`. Q K^T is `tile_matmul %q, %kT`, with K copied
    transposed; P V is `tile_matmul %p, %v into %acc accumulate`.

    With `transposed`, `b` is `[N, K]` and `c = a * b^T`: Q K^T on K rows as
    they are stored (dot products over the head dimension).

    `b` may be a view of the K/V tensor itself instead of a tile buffer
    (attn-tile's `kv-in-place` form: any float element type, loads convert
    to f32). Its key extent (`K` of P V, `N` of a transposed Q K^T) may then
    be dynamic and smaller at run time than the tile's: the view holds only
    the keys that exist. P V sums over the view's rows only; a transposed
    Q K^T writes only the view's columns of `c` (the others are left as they
    are; tile_mask sets them to -inf).

    With `pairs`, `a` is bf16 `[M, K]` and `b` bf16 in copy_tile's
    pair-packed layout `[K / 2, 2 N]` (`b[k, n]` at `[k / 2, 2 n + k % 2]`),
    K even: the products of bf16 values summed in f32 (AMX `tdpbf16ps` on
    the CPU). `pairs` also takes bf16 rows read in place (kv-in-place,
    `pairsInPlace()`): with `transposed`, `b` is `[N', K]` key rows (the
    pairs of the contraction are adjacent in a's and b's rows); without,
    `b` is `[K', N]` value rows (`N` = c's columns; the CPU interleaves two
    rows into pairs as it loads them). Rows read in place may also be fp8
    (f8E4M3FN or f8E5M2: a quantized KV cache under a bf16 query), widened
    to bf16 exactly as they are loaded. `vdpbf16ps` on the CPU's
    AVX-512-BF16 class (attn-tile `kv-in-place-pairs`, the bf16 decode
    form). `scale` (pairs only) multiplies the f32 result: the softmax
    scale of Q K^T applied to the scores, so that Q is not rounded to bf16
    after scaling (torch's bf16 attention scales the f32 scores too).

    `prefetch` (a CPU hint, no effect on the result): a 2-D view of key rows
    as long as `b`'s rows (`[keys, D]` or `[keys, Dv]`, where they are
    stored), typically the next KV block's rows of a paged cache; the CPU
    lowering prefetches its row `r` (clamped to its rows) while it reads
    key row `r` of `b`, instead of `b`'s own row 16 ahead, so that the next
    block's rows are fetched spread over this block's compute.

    Example:
    ```mlir
    attn.tile_matmul %q, %kt into %s : memref<64x64xf32>, memref<64x32xf32>, memref<64x32xf32>
    attn.tile_matmul %q, %kview transposed into %s
        : memref<4x128xf32>, memref<?x128xbf16, strided<[1024, 1], offset: ?>>, memref<4x64xf32>
    attn.tile_matmul %p, %vt pairs into %acc accumulate
        : memref<64x64xbf16>, memref<32x256xbf16>, memref<64x128xf32>
    attn.tile_matmul %qt, %kview transposed pairs scale 0.088 into %s
        : memref<4x128xbf16>, memref<?x128xbf16, strided<[1024, 1], offset: ?>>, memref<4x64xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead]>:$a, Arg<Attn_Tile2D, "", [MemRead]>:$b,
                       Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$c, UnitAttr:$accumulate,
                       UnitAttr:$transposed, UnitAttr:$pairs, OptionalAttr<F64Attr>:$scale,
                       Arg<Optional<Attn_Tile2D>, "", [MemRead]>:$prefetch);
  let assemblyFormat = [{
    $a `,` $b (`transposed` $transposed^)? (`pairs` $pairs^)? (`scale` $scale^)? `into` $c
    (`accumulate` $accumulate^)? (`prefetch` $prefetch^ `:` type($prefetch))? attr-dict
    `:` type($a) `,` type($b) `,` type($c)
  }];
  let extraClassDeclaration = [{
    /// A `pairs` product whose b holds K/V rows as they are stored (the
    /// kv-in-place form): transposed (b [N', K]), or b [K', N] with c's columns.
    bool pairsInPlace() {
      if (!getPairs())
        return false;
      if (getTransposed())
        return true;
      auto b = ::llvm::cast<::mlir::MemRefType>(getB().getType());
      auto c = ::llvm::cast<::mlir::MemRefType>(getC().getType());
      return !b.isDynamicDim(1) && b.getDimSize(1) == c.getDimSize(1);
    }
  }];
  let hasVerifier = 1;
}

def Attn_TileConvertOp : Attn_Op<"tile_convert"> {
  let summary = "converts a tile buffer into another of the same shape";
  let description = [{
    `dest[i, j] = source[i, j]` in `dest`'s element type (round to nearest
    even): the softmax's f32 probabilities P rounded to bf16 for a `pairs`
    P V, as flash-attn rounds P to the input type before its second matmul.

    Example:
    ```mlir
    attn.tile_convert %s to %p : memref<64x64xf32>, memref<64x64xbf16>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead]>:$source,
                       Arg<Attn_Tile2D, "", [MemWrite]>:$dest);
  let assemblyFormat = [{
    $source `to` $dest attr-dict `:` type($source) `,` type($dest)
  }];
  let hasVerifier = 1;
}

def Attn_TileMaskOp : Attn_Op<"tile_mask"> {
  let summary = "sets masked scores of a tile to -inf";
  let description = [{
    `scores[i, j]` holds query `row + i` against key `col + j`. Let
    `i' = row + i + offset` (`offset` is 0 when absent; `Lk - Lq` for a
    bottom-right aligned mask). The score becomes `-inf` when `j >= valid`
    (past the end of the keys), and, for `causal`, when `col + j > i'`; for
    `sliding_window window W`, also when `col + j <= i' - W`; for
    `sliding_window window_sides [left, right]`, when `col + j < i' - left`
    (left >= 0) or `col + j > i' + right` (right >= 0). `none` and `bias`
    mask only the tail. attn-tile emits this op only on KV blocks that
    straddle a boundary.

    Example:
    ```mlir
    attn.tile_mask %s rows %m0 cols %n0 valid %n causal : memref<64x64xf32>
    attn.tile_mask %s rows %m0 cols %n0 valid %n offset %off sliding_window
        window_sides [15, 0] : memref<64x64xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$scores, Index:$row,
                       Index:$col, Index:$valid, Optional<Index>:$offset, Attn_MaskKind:$kind,
                       OptionalAttr<I64Attr>:$window,
                       OptionalAttr<DenseI64ArrayAttr>:$window_sides);
  let assemblyFormat = [{
    $scores `rows` $row `cols` $col `valid` $valid (`offset` $offset^)? $kind
    (`window` $window^)? (`window_sides` $window_sides^)? attr-dict `:` type($scores)
  }];
  let hasVerifier = 1;
}

def Attn_TileSoftcapOp : Attn_Op<"tile_softcap"> {
  let summary = "logit soft-capping of a score tile";
  let description = [{
    `scores[i, j] = cap * tanh(scores[i, j] / cap)` (scores already scaled).

    Example:
    ```mlir
    attn.tile_softcap %s cap 3.0e+01 : memref<64x64xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$scores, F64Attr:$cap);
  let assemblyFormat = "$scores `cap` $cap attr-dict `:` type($scores)";
  let hasVerifier = 1;
}

def Attn_TileAlibiOp : Attn_Op<"tile_alibi"> {
  let summary = "adds the ALiBi bias of one head to a score tile";
  let description = [{
    `scores[i, j] -= slopes[head] * |row + i + offset - (col + j)|`
    (flash-attn's ALiBi with `offset = Lk - Lq`). `slopes` is rank 1, f32.

    Example:
    ```mlir
    attn.tile_alibi %s, %slopes[%h] rows %m0 cols %n0 offset %off
        : memref<64x64xf32>, memref<8xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$scores,
                       Arg<MemRefRankOf<[F32], [1]>, "", [MemRead]>:$slopes, Index:$head,
                       Index:$row, Index:$col, Index:$offset);
  let assemblyFormat = [{
    $scores `,` $slopes `[` $head `]` `rows` $row `cols` $col `offset` $offset attr-dict
    `:` type($scores) `,` type($slopes)
  }];
  let hasVerifier = 1;
}

def Attn_TileBiasOp : Attn_Op<"tile_bias"> {
  let summary = "adds a (broadcast) bias block to a score tile";
  let description = [{
    `scores[i, j] += scale * bias[batch, head, row + i, col + j]` for
    `i < valid_rows`, `j < valid_cols`, where `bias` has rank at most 4,
    aligned from the right to `[B, H, Lq, Lk]`, and a dimension of static
    extent 1 broadcasts (index 0).

    Example:
    ```mlir
    attn.tile_bias %s, %bias[%b, %h, %m0, %n0] valid %vm, %vn scale 1.0
        : memref<64x64xf32>, memref<1x8x1000x1000xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$scores,
                       Arg<Attn_AnyBias, "", [MemRead]>:$bias, Index:$batch, Index:$head,
                       Index:$row, Index:$col, Index:$valid_rows, Index:$valid_cols,
                       F64Attr:$scale);
  let assemblyFormat = [{
    $scores `,` $bias `[` $batch `,` $head `,` $row `,` $col `]` `valid` $valid_rows `,`
    $valid_cols `scale` $scale attr-dict `:` type($scores) `,` type($bias)
  }];
  let hasVerifier = 1;
}

def Attn_TileSoftmaxOp : Attn_Op<"tile_softmax"> {
  let summary = "online-softmax update of one KV block";
  let description = [{
    Per row `i` of the score tile (already scaled and masked). Attention
    sinks need no op of their own: attn-tile starts `max` at the head's sink
    logit and `sum` at 1 (exp(sink - max)), so the sink joins every rescaling.
    ```
    m_new   = max(max[i], max_j scores[i, j])
    alpha   = exp(max[i] - m_new)           (1 while m_new is -inf)
    scores[i, j] = exp(scores[i, j] - m_new) (0 while m_new is -inf)
    sum[i]  = sum[i] * alpha + sum_j scores[i, j]
    acc[i, :] *= alpha;  max[i] = m_new
    ```
    Afterwards `scores` holds the block's unnormalized probabilities P, ready
    for `tile_matmul %p, %v into %acc accumulate`.

    Example:
    ```mlir
    attn.tile_softmax %s, %m, %l, %acc
        : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$scores,
                       Arg<Attn_Tile1D, "", [MemRead, MemWrite]>:$max,
                       Arg<Attn_Tile1D, "", [MemRead, MemWrite]>:$sum,
                       Arg<Attn_Tile2D, "", [MemRead, MemWrite]>:$acc);
  let assemblyFormat = [{
    $scores `,` $max `,` $sum `,` $acc attr-dict
    `:` type($scores) `,` type($max) `,` type($sum) `,` type($acc)
  }];
  let hasVerifier = 1;
}

def Attn_TileStoreOp : Attn_Op<"tile_store"> {
  let summary = "normalizes the accumulator and stores the output rows";
  let description = [{
    For `i < valid`: `dest[batch, head, row + i, :] = sum[i] == 0 ? 0 : acc[i, :] / sum[i]`,
    converted to the destination's element type (rows whose every score was
    masked give zeros, not NaN).

    Example:
    ```mlir
    attn.tile_store %acc, %l to %out[%b, %h, %m0] valid %vm
        : memref<64x64xf32>, memref<64xf32>, memref<1x8x1000x64xf16>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile2D, "", [MemRead]>:$acc, Arg<Attn_Tile1D, "", [MemRead]>:$sum,
                       Arg<Attn_Tensor4D, "", [MemWrite]>:$dest, Index:$batch, Index:$head,
                       Index:$row, Index:$valid);
  let assemblyFormat = [{
    $acc `,` $sum `to` $dest `[` $batch `,` $head `,` $row `]` `valid` $valid attr-dict
    `:` type($acc) `,` type($sum) `,` type($dest)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Split-KV (flash decoding) and the log-sum-exp output
//===----------------------------------------------------------------------===//

def Attn_Lse3D : MemRefRankOf<[F32], [3]>;

def Attn_TileLseOp : Attn_Op<"tile_lse"> {
  let summary = "stores the rows' log-sum-exp";
  let description = [{
    For `i < valid`: `dest[batch, head, row + i] = sum[i] == 0 ? -inf : max[i] + log(sum[i])`,
    the natural log of the softmax denominator of the row (flash-attn's LSE;
    with sinks, the sink's term is in `sum`). `max` and `sum` are the online
    softmax's running state after the last KV block. attn-tile emits it for
    the `lse` output and, with `split-kv`, for each split's partial LSE.

    Example:
    ```mlir
    attn.tile_lse %m, %l to %lse[%b, %h, %m0] valid %vm
        : memref<64xf32>, memref<64xf32>, memref<?x?x?xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tile1D, "", [MemRead]>:$max, Arg<Attn_Tile1D, "", [MemRead]>:$sum,
                       Arg<Attn_Lse3D, "", [MemWrite]>:$dest, Index:$batch, Index:$head,
                       Index:$row, Index:$valid);
  let assemblyFormat = [{
    $max `,` $sum `to` $dest `[` $batch `,` $head `,` $row `]` `valid` $valid attr-dict
    `:` type($max) `,` type($sum) `,` type($dest)
  }];
  let hasVerifier = 1;
}

def Attn_TileCombineOp : Attn_Op<"tile_combine"> {
  let summary = "merges the partial outputs of KV splits with their log-sum-exps";
  let description = [{
    The combine step of split-KV attention (flash decoding). Split `s` of
    batch `b` left its normalized partial output in `part[s * B + b]` and its
    log-sum-exp in `part_lse[s * B + b]`, `B` being `dest`'s batch size. For
    `i < valid`, row `r = row + i`, with `l_s = part_lse[s * B + batch, head, r]`
    for `s < splits` and, given `sinks`, the head's sink logit
    `l_sink = sinks[head]` (the sink joins the denominator once, here):
    ```
    M = max(l_0, ..., l_{splits-1}, l_sink);   w_s = exp(l_s - M)
    W = sum_s w_s + exp(l_sink - M)
    dest[batch, head, r, :] = M == -inf ? 0 : sum_s w_s * part[s * B + batch, head, r, :] / W
    lse[batch, head, r]     = M == -inf ? -inf : M + log(W)
    ```
    Splits that saw no key (`l_s = -inf`) weigh 0; rows no key reaches give
    zeros and `-inf`, never NaN.

    Example:
    ```mlir
    attn.tile_combine %part, %plse splits %ns to %out, %lse[%b, %h, %m0] valid %vm
        : memref<?x8x?x64xf32>, memref<?x8x?xf32>, memref<?x8x?x64xbf16>, memref<?x8x?xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tensor4D, "", [MemRead]>:$part,
                       Arg<Attn_Lse3D, "", [MemRead]>:$part_lse,
                       Arg<Optional<MemRefRankOf<[F32], [1]>>, "", [MemRead]>:$sinks,
                       Arg<Attn_Tensor4D, "", [MemWrite]>:$dest,
                       Arg<Attn_Lse3D, "", [MemWrite]>:$lse, Index:$splits, Index:$batch,
                       Index:$head, Index:$row, Index:$valid);
  let assemblyFormat = [{
    $part `,` $part_lse (`sinks` $sinks^ `:` type($sinks))? `splits` $splits `to` $dest `,` $lse
    `[` $batch `,` $head `,` $row `]` `valid` $valid attr-dict
    `:` type($part) `,` type($part_lse) `,` type($dest) `,` type($lse)
  }];
  let hasVerifier = 1;
}

#endif // ATTN_TILE_OPS_TD

//===- AttnRaggedOps.td - ragged batches and paged KV caches -*- tablegen -*-===//
//
// Ragged (varlen) batches and paged KV caches (issue 12): a fused op whose
// per-query-block work is described by an index table that the caller builds
// (attncc.ragged), and the tile op that gathers K/V rows through a block
// table. See docs/ragged-paged.md.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_RAGGED_OPS_TD
#define ATTN_RAGGED_OPS_TD

include "dialects/attn/AttnDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Attn_IndexTensor : RankedTensorOf<[I32]>;

def Attn_RaggedAttentionOp : Attn_Op<"ragged_attention", [Pure, AttrSizedOperandSegments]> {
  let summary = "attention over a table of query blocks (ragged batches, paged KV caches)";
  let description = [{
    `query: [Bq, H, Lq, D]`, `result: [Bq, H, Lq, Dv]`, `work: [NB, 7]` (i32).
    Without `pages`, `key: [Bk, H / kv_group, Lk, D]`, `value: [Bk, H / kv_group, Lk, Dv]`;
    with `pages(%block_table : [S, max_pages] i32)` they are paged caches
    `[num_pages, H / kv_group, page_size, D]` (any strides: the NHD layout
    `[num_pages, page_size, heads, D]` is a permuted view), and key row `r` of
    sequence `s` is `key[block_table[s, r / page_size], h, r % page_size, :]`.

    Work item `w` (a row of `work`) is one query block of at most the tile's
    rows: `(qb, qr, qn, kb, kr, kn, pos)`. For every head `h` it computes
    `result[qb, h, qr + i, :]`, `i < qn`, attending to the keys `j < kn`,
    which are `key[kb, h / kv_group, kr + j, :]` (or, paged, row `kr + j` of
    sequence `kb`). Query row `i` has position `pos + i` in the keys'
    coordinates: masks and ALiBi use `i' = pos + i` (for flash-attn's
    bottom-right alignment the caller sets `pos = m0 + Lk - Lq`).

    The score of `(i, j)` is `scale * q . k`, then `softcap`, then ALiBi
    `-slope[h] * |i' - j|`; `window_sides [left, right]` keeps
    `i' - left <= j <= i' + right` (-1: unbounded; `[-1, 0]` is causal);
    without it no key is masked. `sinks` as in `attn.attention`. Rows with
    every score masked (or no keys) give zeros. Work items must not overlap
    in the result; the kernel trusts the table (attncc.ragged checks the
    user's cumulative lengths, block tables and lengths before building it).
    When the caches' page size is static and a power of two, paged work items
    must start at page-aligned keys (`kr % page_size == 0`): attn-tile's
    kv-in-place form then reads each KV block inside one page, in place (an
    unaligned start would miss keys, never read outside its page).

    Example:
    ```mlir
    %o = attn.ragged_attention %q, %kc, %vc work(%w : tensor<?x7xi32>)
        pages(%bt : tensor<?x?xi32>) scale 0.125 window_sides [-1, 0] kv_group 4
        : tensor<1x32x?x128xf16>, tensor<?x8x?x128xf16>, tensor<?x8x?x128xf16>
        -> tensor<1x32x?x128xf16>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$query, Attn_FloatTensor:$key,
                       Attn_FloatTensor:$value, Attn_IndexTensor:$work,
                       Optional<Attn_IndexTensor>:$block_table,
                       Optional<Attn_FloatTensor>:$alibi_slopes,
                       Optional<Attn_FloatTensor>:$sinks,
                       F64Attr:$scale, OptionalAttr<F64Attr>:$softcap,
                       OptionalAttr<DenseI64ArrayAttr>:$window_sides,
                       DefaultValuedAttr<I64Attr, "1">:$kv_group);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value `work` `(` $work `:` type($work) `)`
    (`pages` `(` $block_table^ `:` type($block_table) `)`)?
    (`alibi_slopes` `(` $alibi_slopes^ `:` type($alibi_slopes) `)`)?
    (`sinks` `(` $sinks^ `:` type($sinks) `)`)?
    `scale` $scale (`softcap` $softcap^)? (`window_sides` $window_sides^)?
    `kv_group` $kv_group attr-dict
    `:` type($query) `,` type($key) `,` type($value) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_GatherTileOp : Attn_Op<"gather_tile"> {
  let summary = "copies K/V rows of a paged cache, through a block table, into a tile buffer";
  let description = [{
    `source: [num_pages, H, page_size, D]` (any strides), `block_table: [S, max_pages]`.
    For `r` in `[0, R)`, with `t = row + r`:
    `dest[r, :] = r < valid ? source[block_table[seq, t / page_size], head, t % page_size, :] : 0`
    converted to the buffer's element type (`page_size` is `source`'s
    dimension 2, read at run time: one kernel serves every page size). With
    `transposed` the buffer is `[D, R]`, as for `attn.copy_tile`; with
    `pairs` (bf16), copy_tile's pair-packed layouts. Rows at or past `valid`
    read neither the table nor the cache.

    Example:
    ```mlir
    attn.gather_tile %kc[%bt[%s], %h, %n0] to %kbuf transposed valid %n
        : memref<?x8x?x64xf16>, memref<?x?xi32>, memref<64x64xf32>
    ```
  }];
  let arguments = (ins Arg<Attn_Tensor4D, "", [MemRead]>:$source,
                       Arg<MemRefRankOf<[I32], [2]>, "", [MemRead]>:$block_table,
                       Index:$seq, Index:$head, Index:$row, Index:$valid,
                       Arg<Attn_Tile2D, "", [MemWrite]>:$dest, UnitAttr:$transposed,
                       UnitAttr:$pairs);
  let assemblyFormat = [{
    $source `[` $block_table `[` $seq `]` `,` $head `,` $row `]` `to` $dest
    (`transposed` $transposed^)? (`pairs` $pairs^)? `valid` $valid attr-dict
    `:` type($source) `,` type($block_table) `,` type($dest)
  }];
  let hasVerifier = 1;
}

#endif // ATTN_RAGGED_OPS_TD

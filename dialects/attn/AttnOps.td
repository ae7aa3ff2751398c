//===- AttnOps.td - graph-level and fused attn ops ---------*- tablegen -*-===//
#ifndef ATTN_OPS_TD
#define ATTN_OPS_TD

include "dialects/attn/AttnDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Attn_FloatTensor : RankedTensorOf<[AnyFloat]>;

//===----------------------------------------------------------------------===//
// Graph level
//===----------------------------------------------------------------------===//

def Attn_MatmulOp : Attn_Op<"matmul", [Pure]> {
  let summary = "batched matrix product, optionally with the right side transposed";
  let description = [{
    `result[..., i, j] = sum_k lhs[..., i, k] * rhs[..., k, j]`, or with
    `transpose_rhs`, `sum_k lhs[..., i, k] * rhs[..., j, k]` (this is `Q @ K^T`
    without materializing the transpose). Both operands have the same rank
    (at least 2) and equal leading (batch) dimensions. Products accumulate in
    at least f32.

    Example:
    ```mlir
    %s = attn.matmul %q, %k transpose_rhs
        : tensor<1x8x128x64xf16>, tensor<1x8x256x64xf16> -> tensor<1x8x128x256xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$lhs, Attn_FloatTensor:$rhs,
                       UnitAttr:$transpose_rhs);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs (`transpose_rhs` $transpose_rhs^)? attr-dict
    `:` type($lhs) `,` type($rhs) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_ScaleOp : Attn_Op<"scale", [Pure, SameOperandsAndResultType]> {
  let summary = "multiplies every element by a constant";
  let description = [{
    `result = input * scale`. Division by `sqrt(d)` is a scale of `1/sqrt(d)`.

    Example:
    ```mlir
    %t = attn.scale %s by 0.125 : tensor<1x8x128x256xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input, F64Attr:$scale);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = "$input `by` $scale attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_MaskOp : Attn_Op<"mask", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "masks attention scores (causal, sliding window, or additive bias)";
  let description = [{
    Applies a mask to scores `[..., Lq, Lk]`:
    - `causal`: score `(i, j)` becomes `-inf` where `j > i` (top-left aligned,
      as `torch.nn.functional.scaled_dot_product_attention(is_causal=True)`);
    - `sliding_window` with `window = W`: `-inf` unless `i - W < j <= i`;
    - `bias`: adds `bias`, broadcast to the scores' shape (torch rules, aligned
      from the right; `-inf` entries mask).
    `align bottom_right` (causal and sliding window only) aligns the last query
    with the last key: row `i` is taken as `i + Lk - Lq` (KV-cache attention,
    masks built bottom-right by model code), as `attn.attention`'s `align`.

    Example:
    ```mlir
    %m = attn.mask %s causal : tensor<1x8x128x128xf32>
    %w = attn.mask %s sliding_window window 64 : tensor<1x8x128x128xf32>
    %r = attn.mask %s causal align bottom_right : tensor<1x8x16x128xf32>
    %b = attn.mask %s bias(%bias : tensor<1x1x128x128xf32>) : tensor<1x8x128x128xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input, Attn_MaskKind:$kind,
                       Optional<Attn_FloatTensor>:$bias,
                       DefaultValuedAttr<Attn_MaskAlign, "::mlir::attn::MaskAlign::top_left">:$align,
                       OptionalAttr<I64Attr>:$window);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $input $kind (`align` $align^)? (`window` $window^)? (`(` $bias^ `:` type($bias) `)`)?
    attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_SoftmaxOp : Attn_Op<"softmax", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "softmax along one axis";
  let description = [{
    `result = exp(x - max(x)) / sum(exp(x - max(x)))` along `axis`
    (negative axes count from the end). A row that is entirely `-inf` gives
    zeros.

    With `sinks` (`tensor<H x f32>`, scores `[B, H, Lq, Lk]`, the last axis):
    one extra logit per head joins each row's softmax and its column is
    dropped, `p_j = exp(x_j) / (exp(sink[h]) + sum_j exp(x_j))`: gpt-oss's
    `softmax(cat([s, sinks], -1))[..., :-1]`. attn-fuse moves it to
    `attn.attention`'s `sinks`.

    Example:
    ```mlir
    %p = attn.softmax %s axis -1 : tensor<1x8x128x128xf32>
    %q = attn.softmax %s axis -1 sinks(%k : tensor<8xf32>) : tensor<1x8x128x128xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input, I64Attr:$axis,
                       Optional<Attn_FloatTensor>:$sinks);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $input `axis` $axis (`sinks` `(` $sinks^ `:` type($sinks) `)`)? attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TanhOp : Attn_Op<"tanh", [Pure, SameOperandsAndResultType]> {
  let summary = "elementwise tanh (the logit soft-cap idiom `c * tanh(s / c)`)";
  let description = [{
    `result = tanh(input)`. attn-fuse folds `scale(c) . tanh . scale(1 / c)`
    on the scores, before the mask, into `attn.attention`'s `softcap c`.

    Example:
    ```mlir
    %t = attn.tanh %s : tensor<1x8x128x128xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Attn_CastOp : Attn_Op<"cast", [Pure]> {
  let summary = "converts the element type (e.g. softmax upcast to f32 and back)";
  let description = [{
    Example:
    ```mlir
    %h = attn.cast %p : tensor<1x8x128x128xf32> to tensor<1x8x128x128xf16>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
}

def Attn_RepeatHeadsOp : Attn_Op<"repeat_heads", [Pure]> {
  let summary = "repeats each head `repeats` times (GQA/MQA K/V broadcast)";
  let description = [{
    `result[b, h, ...] = input[b, h / repeats, ...]` on `[batch, heads, seq, d]`:
    `torch.repeat_interleave(x, repeats, dim=1)`, or the
    `x[:, :, None].expand(...).reshape(...)` idiom.

    Example:
    ```mlir
    %k4 = attn.repeat_heads %k by 4 : tensor<1x8x128x64xf16> -> tensor<1x32x128x64xf16>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input, I64Attr:$repeats);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = "$input `by` $repeats attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Fused
//===----------------------------------------------------------------------===//

def Attn_AttentionOp : Attn_Op<"attention", [Pure, AttrSizedOperandSegments]> {
  let summary = "fused softmax(softcap(Q K^T * scale) + alibi + mask) V, with optional sinks";
  let description = [{
    `query: [B, Hq, Lq, D]`, `key: [B, Hkv, Lk, D]`, `value: [B, Hkv, Lk, Dv]`,
    `result: [B, Hq, Lq, Dv]`. Query head `h` reads KV head `h / kv_group`
    (`kv_group = Hq / Hkv`: 1 for multi-head, `Hq` for MQA, otherwise GQA).
    Scores and the softmax are computed in f32; the result has the element
    type of `result`. `mask` is `none`, `causal`, `sliding_window` (with
    `window` or `window_sides`) or `bias` (with a `bias` operand broadcastable
    to `[B, Hq, Lq, Lk]`). Rows with every score masked give zeros.

    The score of query `i` and key `j` (head `h`) is, in this order:
    1. `s = scale * q_i . k_j`;
    2. with `softcap c` (c > 0): `s = c * tanh(s / c)` (Gemma 2, flash-attn's
       `softcap`: applied to the scaled scores);
    3. with `alibi_slopes` (`tensor<Hq x f32>`): `s += -slope[h] * |i + Lk - Lq - j|`
       (flash-attn's definition exactly: the bottom-right offset `Lk - Lq`
       is used whatever the mask and its alignment; for a bottom-right
       causal mask this is `slope[h] * (j - i - (Lk - Lq))`);
    4. with a `bias`: `s += bias[b, h, i, j]` (broadcast);
    5. the structured mask. Let `i' = i` (`align top_left`, the default,
       like `scaled_dot_product_attention(is_causal=True)`) or
       `i' = i + Lk - Lq` (`align bottom_right`: KV-cache attention, the
       last query sees the last key; the offset is computed at run time from
       the dims when they are dynamic). `causal` keeps `j <= i'`;
       `sliding_window window W` keeps `i' - W < j <= i'`;
       `sliding_window window_sides [left, right]` keeps
       `i' - left <= j <= i' + right` (flash-attn's `window_size`), where
       `-1` leaves that side unbounded (`[-1, 0]` is causal, `[W - 1, 0]`
       is `window W`).
    With `sinks` (`tensor<Hq x f32>`, one logit per head, gpt-oss), the
    softmax is taken over the row's scores and the sink, and the sink's
    column is dropped: `p_j = exp(s_j) / (exp(sink[h]) + sum_j exp(s_j))`. A
    row with every score masked then gives zeros as well. Slopes and sinks
    are f32 whatever the query's element type.

    Example:
    ```mlir
    %o = attn.attention %q, %k, %v scale 0.125 mask causal kv_group 4
        : tensor<1x32x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>
        -> tensor<1x32x128x64xf16>
    %w = attn.attention %q, %k, %v sinks(%s : tensor<32xf32>) scale 0.125 softcap 5.0e+01
        mask sliding_window align bottom_right window_sides [127, 0] kv_group 4
        : tensor<1x32x1x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>
        -> tensor<1x32x1x64xf16>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$query, Attn_FloatTensor:$key,
                       Attn_FloatTensor:$value,
                       Optional<Attn_FloatTensor>:$bias,
                       Optional<Attn_FloatTensor>:$alibi_slopes,
                       Optional<Attn_FloatTensor>:$sinks,
                       F64Attr:$scale, Attn_MaskKind:$mask,
                       DefaultValuedAttr<Attn_MaskAlign, "::mlir::attn::MaskAlign::top_left">:$align,
                       OptionalAttr<I64Attr>:$window,
                       OptionalAttr<DenseI64ArrayAttr>:$window_sides,
                       OptionalAttr<F64Attr>:$softcap,
                       DefaultValuedAttr<I64Attr, "1">:$kv_group);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`bias` `(` $bias^ `:` type($bias) `)`)?
    (`alibi_slopes` `(` $alibi_slopes^ `:` type($alibi_slopes) `)`)?
    (`sinks` `(` $sinks^ `:` type($sinks) `)`)?
    `scale` $scale (`softcap` $softcap^)? `mask` $mask (`align` $align^)?
    (`window` $window^)? (`window_sides` $window_sides^)? `kv_group` $kv_group attr-dict
    `:` type($query) `,` type($key) `,` type($value) `->` type($result)
  }];
  let hasVerifier = 1;
}

include "dialects/attn/AttnTileOps.td"
include "dialects/attn/AttnRaggedOps.td"

#endif // ATTN_OPS_TD

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

    Example:
    ```mlir
    %m = attn.mask %s causal : tensor<1x8x128x128xf32>
    %w = attn.mask %s sliding_window window 64 : tensor<1x8x128x128xf32>
    %b = attn.mask %s bias(%bias : tensor<1x1x128x128xf32>) : tensor<1x8x128x128xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input, Attn_MaskKind:$kind,
                       Optional<Attn_FloatTensor>:$bias,
                       OptionalAttr<I64Attr>:$window);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $input $kind (`window` $window^)? (`(` $bias^ `:` type($bias) `)`)? attr-dict
    `:` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_SoftmaxOp : Attn_Op<"softmax", [Pure, SameOperandsAndResultType]> {
  let summary = "softmax along one axis";
  let description = [{
    `result = exp(x - max(x)) / sum(exp(x - max(x)))` along `axis`
    (negative axes count from the end). A row that is entirely `-inf` gives
    zeros.

    Example:
    ```mlir
    %p = attn.softmax %s axis -1 : tensor<1x8x128x128xf32>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$input, I64Attr:$axis);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = "$input `axis` $axis attr-dict `:` type($result)";
  let hasVerifier = 1;
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

def Attn_AttentionOp : Attn_Op<"attention", [Pure]> {
  let summary = "fused softmax(Q K^T * scale + mask) V";
  let description = [{
    `query: [B, Hq, Lq, D]`, `key: [B, Hkv, Lk, D]`, `value: [B, Hkv, Lk, Dv]`,
    `result: [B, Hq, Lq, Dv]`. Query head `h` reads KV head `h / kv_group`
    (`kv_group = Hq / Hkv`: 1 for multi-head, `Hq` for MQA, otherwise GQA).
    Scores and the softmax are computed in f32; the result has the element
    type of `result`. `mask` is `none`, `causal`, `sliding_window` (with
    `window`) or `bias` (with a `bias` operand broadcastable to
    `[B, Hq, Lq, Lk]`). Rows with every score masked give zeros.

    Example:
    ```mlir
    %o = attn.attention %q, %k, %v scale 0.125 mask causal kv_group 4
        : tensor<1x32x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>
        -> tensor<1x32x128x64xf16>
    ```
  }];
  let arguments = (ins Attn_FloatTensor:$query, Attn_FloatTensor:$key,
                       Attn_FloatTensor:$value,
                       Optional<Attn_FloatTensor>:$bias,
                       F64Attr:$scale, Attn_MaskKind:$mask,
                       OptionalAttr<I64Attr>:$window,
                       DefaultValuedAttr<I64Attr, "1">:$kv_group);
  let results = (outs Attn_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`bias` `(` $bias^ `:` type($bias) `)`)?
    `scale` $scale `mask` $mask (`window` $window^)? `kv_group` $kv_group attr-dict
    `:` type($query) `,` type($key) `,` type($value) `->` type($result)
  }];
  let hasVerifier = 1;
}

include "dialects/attn/AttnTileOps.td"

#endif // ATTN_OPS_TD

// RUN: attncc-opt %s -split-input-file -attn-tile -verify-diagnostics

func.func @unfused(%q: tensor<1x2x16x16xf32>, %k: tensor<1x2x16x16xf32>) -> tensor<1x2x16x16xf32> {
  // expected-error @+1 {{attn-tile: function 'unfused' must compute one attn.attention on its arguments (run attn-fuse first); cannot tile 'attn.matmul'}}
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32> -> tensor<1x2x16x16xf32>
  %p = attn.softmax %s axis -1 : tensor<1x2x16x16xf32>
  return %p : tensor<1x2x16x16xf32>
}

// -----

func.func @extra_op(%q: tensor<1x2x16x16xf32>, %k: tensor<1x2x16x16xf32>) -> tensor<1x2x16x16xf32> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask none kv_group 1
      : tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32> -> tensor<1x2x16x16xf32>
  // expected-error @+1 {{attn-tile: function 'extra_op' must compute one attn.attention on its arguments (run attn-fuse first); cannot tile 'attn.softmax'}}
  %1 = attn.softmax %0 axis -1 : tensor<1x2x16x16xf32>
  return %1 : tensor<1x2x16x16xf32>
}

// -----

func.func @dynamic_head_dim(%q: tensor<1x2x16x?xf32>, %k: tensor<1x2x16x?xf32>) -> tensor<1x2x16x?xf32> {
  // expected-error @+1 {{attn-tile: head_dim must be static}}
  %0 = attn.attention %q, %k, %k scale 0.25 mask none kv_group 1
      : tensor<1x2x16x?xf32>, tensor<1x2x16x?xf32>, tensor<1x2x16x?xf32> -> tensor<1x2x16x?xf32>
  return %0 : tensor<1x2x16x?xf32>
}

// -----

func.func @not_returned(%q: tensor<1x2x16x16xf32>, %k: tensor<1x2x16x16xf32>) -> tensor<1x2x16x16xf32> {
  // expected-error @+1 {{attn-tile: the function must return the attention result}}
  %0 = attn.attention %q, %k, %k scale 0.25 mask none kv_group 1
      : tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32> -> tensor<1x2x16x16xf32>
  return %q : tensor<1x2x16x16xf32>
}


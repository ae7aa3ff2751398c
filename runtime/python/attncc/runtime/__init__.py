"""Runtimes that load compiled kernels and run them on torch tensors.

`attncc.runtime.cpu`: the LLVM-dialect module of stage 'llvm', JIT-compiled by
MLIR's ExecutionEngine and called on CPU tensors without copies.
"""

"""C++/CUDA sources of the fused ops: package data, compiled on first use (dnerv_fast.ops._jit)."""

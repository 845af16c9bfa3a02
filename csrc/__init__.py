"""C++/CUDA sources of the fused ops, compiled on first use (installed as dnerv_fast.csrc)."""

"""Triton kernels of the fused D-NeRV ops; dnerv_fast.ops.triton_backend wraps them in autograd."""

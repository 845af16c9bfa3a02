"""Triton kernels for the fused D-NeRV ops (installed as dnerv_fast.kernels)."""

"""Shape, dtype and device checks shared by every backend, so bad input fails the same way.

They run on every op call, so each first tests valid input in one expression (~1 us) and only
walks the detailed checks, which name what is wrong, when that test fails.
"""
from __future__ import annotations

import torch

FLOAT_TYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_FLOAT_SET = frozenset(FLOAT_TYPES)


def _check_float(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_SET:
        raise TypeError(f"{name} must be a floating tensor ({', '.join(map(str, FLOAT_TYPES))}), got {x.dtype}")


def _check_rank(name: str, x: torch.Tensor, rank: int, layout: str) -> None:
    if x.dim() != rank:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(x.shape)}")


def check_same_device(**tensors: torch.Tensor | None) -> None:
    if len({t.device for t in tensors.values() if t is not None}) > 1:
        listing = ", ".join(f"{n} on {t.device}" for n, t in tensors.items() if t is not None)
        raise ValueError(f"all tensors must be on one device, got {listing}")


def _floats(*xs) -> bool:
    for x in xs:
        if not (isinstance(x, torch.Tensor) and x.dtype in _FLOAT_SET):
            return False
    return True


def _float_or_none(*xs) -> bool:
    return _floats(*(x for x in xs if x is not None))


def check_flow_warp(start, end, flow, t) -> None:
    if (_floats(start, end, flow, t) and start.dim() == 4 and flow.dim() == 5 and t.dim() == 2
            and end.shape == start.shape and flow.shape[0] == start.shape[0] and flow.shape[1] == 4
            and flow.shape[3:] == start.shape[2:] and t.shape == (start.shape[0], flow.shape[2])
            and start.device == end.device == flow.device == t.device):
        return
    for name, x in (("start", start), ("end", end), ("flow", flow), ("t", t)):
        _check_float(name, x)
    _check_rank("start", start, 4, "[B, C, H, W]")
    _check_rank("flow", flow, 5, "[B, 4, T, H, W]")
    _check_rank("t", t, 2, "[B, T]")
    if end.shape != start.shape:
        raise ValueError(f"end {tuple(end.shape)} must match start {tuple(start.shape)}")
    B, _, H, W = start.shape
    if flow.shape[0] != B or flow.shape[1] != 4 or flow.shape[3:] != (H, W):
        raise ValueError(f"flow must be [B={B}, 4, T, H={H}, W={W}], got {tuple(flow.shape)}")
    if t.shape != (B, flow.shape[2]):
        raise ValueError(f"t must be [B={B}, T={flow.shape[2]}], got {tuple(t.shape)}")
    check_same_device(start=start, end=end, flow=flow, t=t)


def check_saf_modulate(x, fused, weight, bias) -> None:
    if (_floats(x, fused, weight) and x.dim() == 5 and fused.dim() == 5 and weight.dim() == 2
            and fused.shape[0] == x.shape[0] and fused.shape[2:] == x.shape[2:]
            and weight.shape == (2 * x.shape[1], fused.shape[1]) and x.device == fused.device == weight.device
            and (bias is None or (_floats(bias) and bias.shape == (2 * x.shape[1],) and bias.device == x.device))):
        return
    for name, v in (("x", x), ("fused", fused), ("weight", weight)):
        _check_float(name, v)
    _check_rank("x", x, 5, "[B, C, T, H, W]")
    _check_rank("fused", fused, 5, "[B, K, T, H, W]")
    _check_rank("weight", weight, 2, "[2C, K]")
    B, C, T, H, W = x.shape
    if fused.shape[0] != B or fused.shape[2:] != (T, H, W):
        raise ValueError(f"fused must be [B={B}, K, T={T}, H={H}, W={W}], got {tuple(fused.shape)}")
    if weight.shape != (2 * C, fused.shape[1]):
        raise ValueError(f"weight must be [{2 * C}, {fused.shape[1]}], got {tuple(weight.shape)}")
    if bias is not None:
        _check_float("bias", bias)
        if bias.shape != (2 * C,):
            raise ValueError(f"bias must be [{2 * C}], got {tuple(bias.shape)}")
    check_same_device(x=x, fused=fused, weight=weight, bias=bias)


def check_upsample_tail(y, conv_bias, scale, tfc_weight, tfc_bias) -> None:
    if (_floats(y, tfc_weight) and _float_or_none(conv_bias, tfc_bias) and y.dim() == 5
            and isinstance(scale, int) and scale >= 1 and y.shape[1] % (scale * scale) == 0
            and (conv_bias is None or (conv_bias.shape == (y.shape[1],) and conv_bias.device == y.device))
            and tfc_weight.shape == (y.shape[1] // (scale * scale) * y.shape[2], y.shape[2])
            and tfc_weight.device == y.device
            and (tfc_bias is None or (tfc_bias.shape == (tfc_weight.shape[0],) and tfc_bias.device == y.device))):
        return
    _check_float("y", y)
    _check_float("tfc_weight", tfc_weight)
    _check_rank("y", y, 5, "[B, C*s*s, T, H, W]")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    B, CSS, T, H, W = y.shape
    if CSS % (scale * scale):
        raise ValueError(f"y has {CSS} channels, not a multiple of scale^2 = {scale * scale}")
    C = CSS // (scale * scale)
    if conv_bias is not None:
        _check_float("conv_bias", conv_bias)
        if conv_bias.shape != (CSS,):
            raise ValueError(f"conv_bias must be [{CSS}], got {tuple(conv_bias.shape)}")
    if tfc_weight.shape != (C * T, T):
        raise ValueError(f"tfc_weight must be [C*T={C * T}, T={T}], got {tuple(tfc_weight.shape)}")
    if tfc_bias is not None:
        _check_float("tfc_bias", tfc_bias)
        if tfc_bias.shape != (C * T,):
            raise ValueError(f"tfc_bias must be [{C * T}], got {tuple(tfc_bias.shape)}")
    check_same_device(y=y, conv_bias=conv_bias, tfc_weight=tfc_weight, tfc_bias=tfc_bias)

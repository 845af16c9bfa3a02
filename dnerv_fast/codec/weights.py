"""Model weights <-> the bytes of a .dnerv weights section.

Layout: for every tensor of the model's state_dict, in its order, the float32 scales and
then the uint8 zero points of its groups (see :mod:`.quantize`); then one entropy-coded
stream (:mod:`.entropy`) of all offsets q - z. Names and shapes are not stored: the decoder
rebuilds the model from the configuration in the header and reads tensors in the same order.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from dnerv_fast.codec.entropy import decode_symbols, encode_symbols
from dnerv_fast.errors import BitstreamError, QuantizationError
from dnerv_fast.codec.quantize import (QuantizedTensor, check_bits, dequantize_tensor,
                                       num_groups, prune_state_dict, quantize_tensor)


def quantize_state_dict(state_dict: dict[str, torch.Tensor], bits: int, prune: float = 0.0
                        ) -> OrderedDict[str, QuantizedTensor]:
    """Prune (optional) then quantise every tensor; NaN or infinite weights are refused
    (they would silently become zeros)."""
    for name, t in state_dict.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise QuantizationError(f"weight tensor '{name}' holds NaN or infinite values: "
                                    f"training diverged (try a lower learning rate)")
    pruned = prune_state_dict(state_dict, prune)
    return OrderedDict((k, quantize_tensor(t, bits)) for k, t in pruned.items())


def dequantize_state_dict(qsd: dict[str, QuantizedTensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, dequantize_tensor(q)) for k, q in qsd.items())


def pack_weights(qsd: dict[str, QuantizedTensor]) -> bytes:
    """Serialise quantised tensors (in order) to a weights section."""
    parts = []
    for q in qsd.values():
        parts += [q.scale.astype("<f4").tobytes(), q.zero_point.astype(np.uint8).tobytes()]
    offsets = [q.offsets for q in qsd.values()]
    parts.append(encode_symbols(np.concatenate(offsets) if offsets else np.zeros(0)))
    return b"".join(parts)


def unpack_weights(data: bytes, shapes: dict[str, tuple[int, ...]], bits: int
                   ) -> OrderedDict[str, QuantizedTensor]:
    """Inverse of :func:`pack_weights` for a model whose tensors have ``shapes`` (in order)."""
    bits = check_bits(bits)
    pos, params = 0, []
    for shape in shapes.values():
        g = num_groups(shape)
        if pos + 5 * g > len(data):
            raise BitstreamError("weights section is shorter than the model's scales need")
        scale = np.frombuffer(data, "<f4", g, pos).astype(np.float32)
        if not (np.isfinite(scale).all() and (scale >= 0).all()):
            raise BitstreamError("weights section holds a negative or non-finite scale")
        zero = np.frombuffer(data, np.uint8, g, pos + 4 * g).copy()
        params.append((scale, zero))
        pos += 5 * g
    sizes = [int(np.prod(s)) if s else 1 for s in shapes.values()]
    offsets, used = decode_symbols(data[pos:], sum(sizes))
    if pos + used != len(data):
        raise BitstreamError(f"weights section has {len(data) - pos - used} unexplained bytes")
    limit = 2 ** bits - 1
    if offsets.size and (offsets.min() < -limit or offsets.max() > limit):
        raise BitstreamError(f"weight symbols fall outside the {bits}-bit range")
    out, start = OrderedDict(), 0
    for (name, shape), n, (scale, zero) in zip(shapes.items(), sizes, params):
        out[name] = QuantizedTensor(tuple(shape), bits, offsets[start:start + n].astype(np.int16),
                                    scale, zero)
        start += n
    return out

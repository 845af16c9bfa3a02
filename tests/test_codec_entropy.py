"""Entropy coding: exact round trips and a rate within a hair of the empirical entropy."""
import numpy as np
import pytest

from dnerv_fast.codec.entropy import decode_symbols, empirical_entropy_bits, encode_symbols


def cases():
    rng = np.random.default_rng(0)
    return {
        "gaussian": np.round(rng.normal(0, 20, 200_000)).clip(-255, 255).astype(np.int64),
        "laplace": np.round(rng.laplace(0, 3, 200_000)).clip(-15, 15).astype(np.int64),
        "uniform8": rng.integers(-128, 128, 100_000),
        "one-symbol": np.full(5000, 7),
        "skewed": np.where(rng.random(100_000) < 0.9, 0, rng.integers(-255, 256, 100_000)),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_round_trip_and_rate(name):
    symbols = cases()[name]
    stream = encode_symbols(symbols)
    back, used = decode_symbols(stream + b"trailing", symbols.size)
    assert used == len(stream) and np.array_equal(back, symbols)
    table = 2 * (int(symbols.max()) - int(symbols.min()) + 1) + 12
    payload_bits = 8 * (len(stream) - table)
    entropy = empirical_entropy_bits(symbols)
    print(f"{name}: {payload_bits} bits coded vs {entropy:.0f} bits entropy "
          f"(+{payload_bits / max(entropy, 1) - 1:.3%}), table {table} bytes")
    assert payload_bits <= entropy * 1.003 + 64


def test_empty():
    stream = encode_symbols(np.zeros(0, np.int64))
    back, used = decode_symbols(stream, 0)
    assert back.size == 0 and used == len(stream)

"""Entropy coding: exact round trips, a rate within a hair of the empirical entropy, the
cheapest mode per tensor with every table counted, and hostile tables refused."""
import struct

import numpy as np
import pytest

from dnerv_fast.codec.entropy import (CODE_FREQ, Histogram, decode_stream, empirical_entropy_bits,
                                      encode_stream, fit_table, read_table)
from dnerv_fast.codec.modes import Mode, choose, raw_bytes
from dnerv_fast.errors import BitstreamError


def cases():
    rng = np.random.default_rng(0)
    return {
        "gaussian": np.round(rng.normal(0, 20, 200_000)).clip(-255, 255).astype(np.int64),
        "laplace": np.round(rng.laplace(0, 3, 200_000)).clip(-15, 15).astype(np.int64),
        "uniform8": rng.integers(-128, 128, 100_000),
        "one-symbol": np.full(5000, 7),
        "skewed": np.where(rng.random(100_000) < 0.9, 0, rng.integers(-255, 256, 100_000)),
    }


def test_frequency_codes_rise_in_steps_of_at_most_one_sixteenth():
    freq = CODE_FREQ[1:]
    assert CODE_FREQ[0] == 0 and freq[0] == 16 and freq[-1] == 983040
    assert (np.diff(freq) > 0).all() and (freq[1:] / freq[:-1] <= 1 + 1 / 16).all()


@pytest.mark.parametrize("name", list(cases()))
def test_round_trip_and_rate(name):
    symbols = cases()[name]
    table = fit_table(Histogram.of(symbols))
    stream = encode_stream([(symbols, table)])
    (back,) = decode_stream(stream, 0, [(table, symbols.size)])
    assert np.array_equal(back, symbols)
    payload_bits = 8 * (len(stream) - 4)
    entropy = empirical_entropy_bits(symbols)
    print(f"{name}: {payload_bits} bits coded vs {entropy:.0f} bits entropy "
          f"(+{payload_bits / max(entropy, 1) - 1:.3%}), table {table.nbytes} bytes")
    assert payload_bits <= entropy * 1.003 + 64
    assert abs(table.information_bits(Histogram.of(symbols)) - payload_bits) <= \
        0.001 * payload_bits + 64


def test_sequences_under_their_own_tables_share_one_stream():
    parts = [(s, fit_table(Histogram.of(s))) for s in cases().values()]
    stream = encode_stream(parts)
    back = decode_stream(stream, 0, [(t, s.size) for s, t in parts])
    assert all(np.array_equal(a, s) for a, (s, _) in zip(back, parts))
    with pytest.raises(BitstreamError, match="more than its symbols"):
        decode_stream(stream, 0, [(t, s.size) for s, t in parts[:-2]])
    with pytest.raises(BitstreamError, match="words"):
        decode_stream(stream + b"\0", 0, [(t, s.size) for s, t in parts])


def test_a_single_symbol_costs_nothing():
    table = fit_table(Histogram.of(np.full(100, -3)))
    assert table.used == 1 and table.information_bits(Histogram.of(np.full(100, -3))) == 0
    assert encode_stream([(np.full(100, -3), table)]) == struct.pack("<I", 0)


def test_a_symbol_outside_a_table_cannot_be_coded_under_it():
    table = fit_table(Histogram.of(np.array([0, 1, 1, 3])))
    assert table.information_bits(Histogram.of(np.array([2]))) == float("inf")
    assert table.information_bits(Histogram.of(np.array([4]))) == float("inf")


def test_hostile_tables_are_refused_before_their_codes_are_read():
    good = fit_table(Histogram.of(np.array([-2, 0, 0, 5]))).to_bytes()
    table, end = read_table(good, 0, -63, 63, "shared table")
    assert end == len(good) and table.lo == -2 and table.codes.size == 8
    for data, message in [(good[:3], "ends inside"), (good[:-1], "ends inside"),
                          (struct.pack("<hH", -64, 2) + b"\1\1", "outside"),
                          (struct.pack("<hH", 60, 5) + b"\1" * 5, "outside"),
                          (struct.pack("<hH", 0, 65535), "outside"),
                          (struct.pack("<hH", 0, 3) + b"\0\0\0", "frequency 0")]:
        with pytest.raises(BitstreamError, match=message):
            read_table(data, 0, -63, 63, "shared table")
    assert read_table(struct.pack("<hH", 0, 0), 0, -63, 63, "shared table") == (None, 4)


def test_each_tensor_takes_its_cheapest_mode_with_tables_counted():
    rng = np.random.default_rng(1)
    alike = [np.round(rng.normal(0, 40, 20_000)).clip(-255, 255).astype(np.int64)
             for _ in range(6)]
    peaked = np.round(rng.laplace(0, 2, 200_000)).clip(-255, 255).astype(np.int64)
    tiny = rng.integers(-255, 256, 12)
    hists = [Histogram.of(s) for s in alike + [peaked, tiny]]
    choice = choose(hists, 8)
    assert choice.modes == (Mode.SHARED,) * 6 + (Mode.OWN, Mode.RAW)
    own = sum(fit_table(h).nbytes + fit_table(h).information_bits(h) / 8 for h in hists)
    one = fit_table(sum(hists[1:], hists[0]))
    single = one.nbytes + sum(one.information_bits(h) for h in hists) / 8
    assert choice.cost_bytes < min(own, single)
    assert choice.cost_bytes == pytest.approx(
        choice.shared.nbytes + fit_table(hists[6]).nbytes + raw_bytes(12, 8)
        + sum(choice.shared.information_bits(h) for h in hists[:6]) / 8
        + fit_table(hists[6]).information_bits(hists[6]) / 8)


def test_without_a_shared_tensor_no_shared_table_is_stored():
    hists = [Histogram.of(np.arange(-255, 256))]
    choice = choose(hists, 8)
    assert choice.modes == (Mode.RAW,) and choice.shared is None

"""Streamed training data: chunks cut from the resident path's plan give its batches value for
value, visit every clip once per epoch, are prefetched in the right order, and train."""
import threading

import pytest
import torch

from test_train_fast import CONFIG, _prepared, _train
from dnerv_fast.train import TrainSettings, train
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.train.placement import place_data
from dnerv_fast.train.prefetch import HostTransport, stream_chunks
from dnerv_fast.train.resident import DataTooLarge, ResidentClips
from dnerv_fast.train.streamed import StreamedClips

CPU = torch.device("cpu")
# The test videos take 530 kB (680 kB with holes) as uint8; one clip reads 8 frames of
# 3x64x64 (and 8 visibility masks of 64x64) and 2 keyframes, 123 kB (156 kB). Two chunk
# buffers of 320 kB hold two one-clip steps each, so an epoch of 7 clips takes 4 chunks; of
# 200 kB, one step each, and the data does not fit: "auto" streams it.
BUDGET, SMALL = 640_000, 400_000


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "holes"])
def videos(request):
    return [_prepared(9, 128, request.param), _prepared(19, 64)]


def _order(n, seed=3):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("rank", [0, 1])
def test_streamed_batches_equal_resident_batches(videos, rank):
    resident = ResidentClips(videos, CONFIG, CPU)
    streamed = StreamedClips(videos, CONFIG, CPU, BUDGET)
    order = _order(len(resident))
    assert len(streamed.chunks(streamed.tables.plan(order, 2, rank, 2))) >= 2
    pairs = list(zip(resident.epoch(order, 2, rank, 2), streamed.epoch(order, 2, rank, 2),
                     strict=True))
    assert len(pairs) == 4
    for (want, want_weight), (got, weight) in pairs:
        assert weight == want_weight
        for name in ("keyframes", "start", "end", "target", "kept", "visible"):
            a, b = getattr(got, name), getattr(want, name)
            assert (a is None and b is None) or torch.equal(a, b), name
        for name in ("embed_input", "backward_distance", "mask"):
            assert torch.equal(getattr(got.inputs, name), getattr(want.inputs, name)), name


def test_every_clip_is_read_once_per_epoch(videos):
    streamed = StreamedClips(videos, CONFIG, CPU, BUDGET)
    chunks = streamed.chunks(streamed.tables.plan(_order(len(streamed)), 1))
    assert len(chunks) >= 3
    T = CONFIG.clip_len
    read = [tuple(row) for c in chunks for p in c.steps for row in c.frames[p.frames].reshape(-1, T)]
    assert sorted(read) == sorted(map(tuple, streamed.tables.frame_rows))
    for c in chunks:                  # a chunk holds each row it needs once, within the budget
        assert len(set(c.frames)) == len(c.frames)
        assert streamed._bytes(len(c.frames), len(c.keys)) <= streamed.chunk_bytes


class _Now:
    """An executor that runs each job when it is submitted: a fixed order of calls."""

    def submit(self, fn, *args):
        from concurrent.futures import Future
        done = Future()
        done.set_result(fn(*args))
        return done


class Recording(HostTransport):
    """The CPU transport, logging its calls and checking that no slot is staged while the
    steps of its previous chunk may still read it."""

    def __init__(self):
        super().__init__(4)
        self.log, self.busy, self.lock = [], [False, False], threading.Lock()

    def _note(self, *entry):
        with self.lock:
            self.log.append(entry)

    def stage(self, slot, fill):
        assert not self.busy[slot], f"slot {slot} staged while in use"
        self._note("stage", slot, fill(self.buffers[slot]))

    def send(self, slot):
        self._note("send", slot)

    def acquire(self, slot):
        self.busy[slot] = True
        self._note("acquire", slot)
        return self.buffers[slot]

    def release(self, slot):
        self.busy[slot] = False
        self._note("release", slot)


def test_the_next_chunk_is_staged_while_this_one_trains():
    transport = Recording()
    seen = []
    for _buffer, chunk in stream_chunks([10, 11, 12], lambda c: lambda buf: c, transport, _Now()):
        seen.append(chunk)
        transport._note("steps", chunk)
    assert seen == [10, 11, 12]
    assert transport.log == [
        ("stage", 0, 10), ("send", 0), ("acquire", 0),
        ("stage", 1, 11), ("send", 1), ("steps", 10), ("release", 0),
        ("acquire", 1), ("stage", 0, 12), ("send", 0), ("steps", 11), ("release", 1),
        ("acquire", 0), ("steps", 12), ("release", 0)]


def test_prefetch_on_a_worker_thread_keeps_the_slots_apart():
    transport = Recording()
    chunks = list(range(9))
    assert [c for _, c in stream_chunks(chunks, lambda c: lambda buf: c, transport)] == chunks
    staged = [entry[2] for entry in transport.log if entry[0] == "stage"]
    assert staged == chunks


def test_streamed_training_gives_the_resident_numbers(capsys):
    videos = [_prepared(9, 128, True), _prepared(19, 64)]
    resident_model, resident = _train(videos, data="resident", batch_size=1)
    torch.manual_seed(0)
    streamed_model = DNeRV(CONFIG)
    settings = TrainSettings(epochs=2, batch_size=1, lr=2e-3, data="auto", data_memory=SMALL)
    streamed = train(streamed_model, videos, settings, progress=True)
    assert "streaming the training data" in capsys.readouterr().out
    for a, b in zip(resident, streamed):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["psnr"] == pytest.approx(b["psnr"], rel=1e-6)
    for a, b in zip(resident_model.parameters(), streamed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_placement_and_its_limits(videos):
    assert isinstance(place_data(videos, CONFIG, CPU, "auto"), ResidentClips)
    assert isinstance(place_data(videos, CONFIG, CPU, "auto", SMALL), StreamedClips)
    assert place_data(videos, CONFIG, CPU, "host") is None
    with pytest.raises(DataTooLarge, match="stream it"):
        ResidentClips(videos, CONFIG, CPU, SMALL)
    tiny = StreamedClips(videos, CONFIG, CPU, 2 * 10_000)
    with pytest.raises(DataTooLarge, match="one batch reads"):
        list(tiny.epoch(_order(len(tiny)), 2))
    with pytest.raises(Exception, match="data_memory"):
        TrainSettings(epochs=1, data_memory=-1).validate()

"""Progress off a terminal: whole lines, at most one every few seconds, no carriage returns."""
import io

from dnerv_fast import progress
from dnerv_fast.progress import LineProgress, progress_bar


def test_off_a_terminal_progress_is_whole_lines(monkeypatch):
    clock = iter(float(t) for t in range(0, 1000, 3))      # each call 3 s after the last
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress_bar(total=10, desc="epoch 1/1", unit="step", file=out)
    assert isinstance(bar, LineProgress)
    bar.set_postfix(loss="0.1", refresh=False)
    for _ in range(10):
        bar.update(1)
    bar.close()
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 2 <= len(lines) <= 5 and lines[-1].startswith("epoch 1/1: 100%")
    assert "10/10" in lines[-1] and "loss=0.1" in lines[-1]


def test_disabled_progress_writes_nothing():
    out = io.StringIO()
    assert list(progress_bar(range(3), file=out, disable=True)) == [0, 1, 2]
    assert out.getvalue() == ""

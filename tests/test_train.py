"""Training pieces: schedule, masked loss, batching with shared keyframes, resumable loop."""
import shutil

import pytest
import torch

from checkpoint_hooks import copy_checkpoint_after
from dnerv_fast.errors import CheckpointError, CodecError, UsageError
from dnerv_fast.media.keyframes import encode_keyframe
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.clips.data import prepare_video
from dnerv_fast.train import TrainSettings, train
from dnerv_fast.train.trainer import LatePhase
from dnerv_fast.clips.data import ClipRef, all_clips, keyframe_images, make_batch
from dnerv_fast.clips.decoder import run_batch
from dnerv_fast.train.loss import reconstruction_loss
from dnerv_fast.train.lr_schedule import learning_rate
from dnerv_fast.media.synthetic import moving_pattern


@pytest.fixture(scope="module")
def prepared():
    video, config = moving_pattern(9, 64, 64), DNeRV.from_config("tiny").config
    keys = [encode_keyframe(f, "png")[0] for f in keyframe_images(video, config)]
    return prepare_video(video, config, "png", keys)


def test_learning_rate_schedule():
    assert learning_rate(0.0, 1.0) == pytest.approx(0.1)
    assert learning_rate(0.1, 1.0) == pytest.approx(0.55)
    assert learning_rate(0.2, 1.0) == pytest.approx(1.0)
    assert learning_rate(0.6, 1.0) == pytest.approx(0.5)
    assert learning_rate(1.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    after = [learning_rate(p / 100, 1.0) for p in range(20, 101)]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_loss_ignores_masked_frames():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 16, 16, generator=g)
    output = target.clone()
    output[:, :, :4] += 0.1
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 4:] = True
    for kind in ("uvg", "ucf101"):
        assert reconstruction_loss(output, target, mask, kind).item() == pytest.approx(0, abs=1e-6)
        mask[:, 0] = True
        assert reconstruction_loss(output, target, mask, kind).item() > 1e-3
        mask[:, 0] = False
    with pytest.raises(CodecError, match="unknown loss"):
        reconstruction_loss(output, target, mask, "l2")


def test_padding_is_hidden_from_the_loss_and_the_training_psnr(prepared):
    """Frames that do not fill the patch grid are padded with repeated edge pixels; the
    padding is marked hidden, so neither the loss nor the training PSNR counts it."""
    config = DNeRV.from_config("tiny").config
    video = moving_pattern(9, 48, 80)                    # 2 x 64x64 patches, 46% padding
    keys = [encode_keyframe(f, "png")[0] for f in keyframe_images(video, config)]
    padded = prepare_video(video, config, "png", keys)
    assert padded.visible.shape == (2, 9, 1, 64, 64)
    assert padded.visible.float().mean().item() == pytest.approx(48 * 80 / (2 * 64 * 64))
    assert padded.visible[0, :, :, :48].all() and not padded.visible[0, :, :, 48:].any()
    assert padded.visible[1, :, :, :48, :16].all() and not padded.visible[1, :, :, :, 16:].any()
    batch = make_batch([padded], all_clips([padded]), config)
    output = batch.target.clone()
    output[..., 48:, :] = 1 - output[..., 48:, :]        # wrong on the padding only
    kept = batch.inputs.mask
    assert reconstruction_loss(output, batch.target, kept, visible=batch.visible).item() == \
        pytest.approx(0, abs=1e-6)
    assert reconstruction_loss(output, batch.target, kept).item() > 0.01
    assert prepared.visible is None                      # 64x64 fills its patch exactly


def test_batch_shares_keyframes_and_matches_forward(prepared):
    config = DNeRV.from_config("tiny").config
    assert prepared.key_indices == [0, 8]
    refs = all_clips([prepared])
    assert refs == [ClipRef(0, 0, 0), ClipRef(0, 0, 1)]
    batch = make_batch([prepared], refs, config)
    assert batch.keyframes.shape[0] == 2                  # frame 8 ends clip 0 and starts clip 1
    assert batch.start.tolist() == [0, 1] and batch.end.tolist() == [1, 1]
    assert batch.inputs.mask[1].tolist() == [True] + [False] * 7
    torch.manual_seed(0)
    model = DNeRV(config).eval()
    with torch.no_grad():
        ours = run_batch(model, batch)
        pairs = torch.stack([batch.keyframes[batch.start], batch.keyframes[batch.end]], dim=2)
        ref = model(batch.inputs.embed_input, model.normalize(pairs), batch.inputs.backward_distance)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_training_learns(prepared):
    torch.manual_seed(0)
    model = DNeRV.from_config("tiny")
    history = train(model, [prepared], TrainSettings(epochs=12, batch_size=2, lr=2e-3),
                    progress=False)
    assert len(history) == 12
    assert history[-1]["psnr"] > history[0]["psnr"] + 1.0, history


def test_resume_continues_exactly(prepared, tmp_path, monkeypatch):
    settings = TrainSettings(epochs=3, batch_size=1)
    ckpt, saved = tmp_path / "run.ckpt", tmp_path / "after1.ckpt"
    copy_checkpoint_after(monkeypatch, 1, saved)
    torch.manual_seed(1)
    straight = DNeRV.from_config("tiny")
    h1 = train(straight, [prepared], settings, checkpoint=ckpt, checkpoint_every=1, progress=False)
    monkeypatch.undo()
    shutil.copy(saved, ckpt)                              # as if the run had died after epoch 1
    torch.manual_seed(123)                                # resuming must not depend on this
    resumed = DNeRV.from_config("tiny")
    h2 = train(resumed, [prepared], settings, checkpoint=ckpt, resume=True, progress=False)
    assert h1 == h2
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_late_phase_ends_the_same_schedule_and_resumes_from_before_it(prepared, tmp_path,
                                                                         monkeypatch, capsys):
    """The late phase (QAT) takes the last epochs of one run: a phase that changes nothing
    leaves the run exactly as without it, it starts after ``start`` epochs, the checkpoint is
    the one before it, and resuming from that runs the phase again to the same weights."""
    settings = TrainSettings(epochs=3, batch_size=1)
    torch.manual_seed(1)
    plain = DNeRV.from_config("tiny")
    saved = tmp_path / "after2.ckpt"
    copy_checkpoint_after(monkeypatch, 2, saved)
    train(plain, [prepared], settings, checkpoint=tmp_path / "plain.ckpt", checkpoint_every=1,
          progress=False)
    monkeypatch.undo()
    at_start = torch.load(saved, weights_only=True)["model"]

    entered, undone = [], []

    def enter(model):
        entered.append({k: v.clone() for k, v in model.state_dict().items()})
        return lambda: undone.append(True)

    torch.manual_seed(1)
    phased = DNeRV.from_config("tiny")
    params = list(phased.parameters())
    ckpt = tmp_path / "phased.ckpt"
    train(phased, [prepared], settings, checkpoint=ckpt, progress=True,
          late=LatePhase(2, enter, "through nothing"))
    assert len(entered) == 1 and undone == [True]
    assert all(torch.equal(entered[0][k], v) for k, v in at_start.items())   # after 2 epochs
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                 phased.state_dict().values()))
    assert all(a is b for a, b in zip(params, phased.parameters()))
    out = capsys.readouterr().out
    labelled = [line.split(":")[0] for line in out.splitlines() if "training patches" in line]
    assert labelled == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert [line.split(":")[0] for line in out.splitlines() if "(through nothing)" in line] == \
        ["epoch 3/3"]
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2                           # the phase's epochs are not saved

    # Resuming runs the phase again from the checkpoint before it.
    torch.manual_seed(9)
    resumed = DNeRV.from_config("tiny")
    train(resumed, [prepared], settings, checkpoint=ckpt, resume=True, progress=False,
          late=LatePhase(2, enter, "through nothing"))
    assert len(entered) == 2 and all(torch.equal(entered[1][k], v) for k, v in at_start.items())
    assert all(torch.equal(a, b) for a, b in zip(phased.state_dict().values(),
                                                 resumed.state_dict().values()))
    # A run without the phase does not take its checkpoint, nor one with another start.
    for late in (None, LatePhase(1, enter, "x")):
        with pytest.raises(CheckpointError, match="other settings"):
            train(DNeRV.from_config("tiny"), [prepared], settings, checkpoint=ckpt, resume=True,
                  progress=False, late=late)
    with pytest.raises(UsageError, match="late phase"):
        train(DNeRV.from_config("tiny"), [prepared], settings, progress=False,
              late=LatePhase(3, enter, "x"))


def test_resume_errors(prepared, tmp_path):
    model = DNeRV.from_config("tiny")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(model, [prepared], TrainSettings(epochs=1), checkpoint=tmp_path / "none",
              resume=True, progress=False)
    train(model, [prepared], TrainSettings(epochs=1), checkpoint=tmp_path / "c", progress=False)
    with pytest.raises(CheckpointError, match="other settings"):
        train(model, [prepared], TrainSettings(epochs=1, lr=1e-3), checkpoint=tmp_path / "c",
              resume=True, progress=False)
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        train(model, [prepared], TrainSettings(epochs=1), checkpoint=tmp_path / "junk",
              resume=True, progress=False)


def test_bad_settings(prepared):
    with pytest.raises(UsageError, match="epochs"):
        train(DNeRV.from_config("tiny"), [prepared], TrainSettings(epochs=0), progress=False)

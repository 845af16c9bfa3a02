"""Inpainting: box and video masks, a loss blind to the holes, no leak, masked-region PSNR."""
import numpy as np
import pytest
import torch

from dnerv_fast.cli import main
from dnerv_fast.codec.evaluate import evaluate, region_psnr
from dnerv_fast.codec.pipeline import encode, load
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.train.loss import reconstruction_loss
from dnerv_fast.train.masks import BoxMasks, MaskError, VideoMasks, fill_holes, video_holes
from dnerv_fast.codec.bitstream import from_bytes
from dnerv_fast.media.video_io import Video, read_video, write_video

BOXES = BoxMasks(count=3, size=12, seed=7)


def pattern(frames=9, h=64, w=64):
    return moving_pattern(frames, h, w, name="pattern")


def test_box_masks_are_seeded_boxes_inside_the_frame():
    video = pattern(h=48, w=80)
    corners = BOXES.boxes(0, video)
    assert corners.shape == (9, 3, 2)
    assert corners[..., 0].min() >= 0 and corners[..., 0].max() <= 48 - 12
    assert corners[..., 1].min() >= 0 and corners[..., 1].max() <= 80 - 12
    holes = BOXES.holes(0, video)
    assert np.array_equal(holes, BOXES.holes(0, video))                      # deterministic
    assert not np.array_equal(holes, BoxMasks(3, 12, seed=8).holes(0, video))
    assert not np.array_equal(holes, BOXES.holes(1, video))                  # per video
    assert not np.array_equal(holes[0], holes[1])                            # per frame
    assert np.array_equal(BOXES.holes(0, pattern(5, 48, 80)), holes[:5])     # --max-frames
    expected = np.zeros_like(holes)
    for frame, boxes in zip(expected, corners):
        for top, left in boxes:
            frame[top:top + 12, left:left + 12] = True
    assert np.array_equal(holes, expected)
    single = BoxMasks(1, 12).holes(0, video)
    assert (single.sum(axis=(1, 2)) == 144).all()
    for frame in single:                                                     # one 12x12 square
        rows, cols = np.nonzero(frame)
        assert rows.max() - rows.min() == cols.max() - cols.min() == 11


def test_bad_box_settings():
    with pytest.raises(MaskError, match="at least one"):
        BoxMasks(0, 8)
    with pytest.raises(MaskError, match="at least 1 pixel"):
        BoxMasks(2, 0)
    with pytest.raises(MaskError, match="do not fit"):
        BoxMasks(1, 65).holes(0, pattern())


def test_fill_holes_uses_visible_pixels_only():
    video, holes = pattern(), BOXES.holes(0, pattern())
    garbage = video.frames.copy()
    garbage[holes] = np.random.default_rng(0).integers(0, 256, size=(holes.sum(), 3))
    filled = fill_holes(video, holes)
    assert np.array_equal(filled.frames, fill_holes(Video("g", garbage, 25.0), holes).frames)
    assert np.array_equal(filled.frames[~holes], video.frames[~holes])
    mean = video.frames[0][~holes[0]].mean(axis=0).round()
    assert (filled.frames[0][holes[0]] == mean).all()


@pytest.mark.parametrize("kind", ["uvg", "ucf101"])
def test_loss_ignores_hidden_pixels(kind):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 32, 32, generator=g)
    start = torch.rand(2, 3, 8, 32, 32, generator=g)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    visible = torch.ones(2, 1, 8, 32, 32)
    visible[:, :, :, 4:16, 10:20] = 0
    visible[0, :, 3, 20:, 20:] = 0

    def loss_and_grad(ref):
        output = start.clone().requires_grad_()
        loss = reconstruction_loss(output, ref, mask, kind, visible)
        loss.backward()
        return loss.detach(), output.grad

    loss, grad = loss_and_grad(target)
    garbage = torch.where(visible.bool(), target, torch.rand(target.shape, generator=g))
    assert not torch.equal(garbage, target)
    loss2, grad2 = loss_and_grad(garbage)
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)
    assert (grad[visible.expand_as(grad) == 0] == 0).all()        # no signal from the holes
    changed = target.clone()
    changed[0, :, 0, 0, 0] += 0.5                                             # a visible pixel
    assert loss_and_grad(changed)[0] != loss
    everything = reconstruction_loss(start, target, mask, kind, torch.ones_like(visible))
    assert everything.item() == pytest.approx(reconstruction_loss(start, target, mask, kind).item(),
                                              rel=1e-5)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same video twice: as is, and with garbage in every pixel the box masks hide."""
    tmp = tmp_path_factory.mktemp("inpaint")
    video = pattern()
    holes = BOXES.holes(0, video)
    garbage = video.frames.copy()
    garbage[holes] = np.random.default_rng(1).integers(0, 256, size=(holes.sum(), 3))
    (tmp / "clean").mkdir()
    (tmp / "dirty").mkdir()
    clean = write_video(video.frames, tmp / "clean" / "pattern.mp4")
    dirty = write_video(garbage, tmp / "dirty" / "pattern.mp4")
    return tmp, clean, dirty


@pytest.fixture(scope="module")
def inpainted(sources):
    tmp, clean, dirty = sources
    files = []
    for src in (clean, dirty):
        path = src.parent / "pattern.dnerv"
        encode([src], path, epochs=2, batch_size=2, keyframe_codec="webp", masks=BOXES,
               progress=False)
        files.append(path)
    return files


def test_hidden_pixels_do_not_leak(sources, inpainted):
    """The garbage never reaches training: the frames the encoder trains on and codes its
    keyframes from (holes filled from the visible pixels) are equal value for value, and so
    are the two files' headers and keyframes. The files' weights are not compared byte for
    byte: two trainings in one process on equal data may sum in another order (CPU kernels
    split sums by their buffers' alignment), which moved a scale by one ulp in one CI run."""
    _, *paths = sources
    videos = [read_video(p) for p in paths]
    holes = [video_holes(BOXES, [v])[0] for v in videos]     # each file codes one video
    assert np.array_equal(holes[0], holes[1]) and holes[0].any()
    clean_frames, dirty_frames = (fill_holes(v, h).frames for v, h in zip(videos, holes))
    assert np.array_equal(clean_frames, dirty_frames)
    clean, dirty = (from_bytes(p.read_bytes()) for p in inpainted)
    assert clean.header == dirty.header and clean.keyframes == dirty.keyframes
    assert load(inpainted[0]).header["inpainting"] == {"kind": "boxes", "count": 3, "size": 12,
                                                       "seed": 7}


def test_eval_reports_masked_psnr(sources, inpainted, capsys):
    _, clean_src, _ = sources
    rows = evaluate(inpainted[0], [clean_src], anchors=(), progress=False)
    by_method = {(r.method, r.video): r for r in rows}
    assert set(by_method) == {(m, v) for m in ("D-NeRV", "holes", "visible")
                              for v in ("pattern", "ALL")}
    decoded, holes = load(inpainted[0]).render(0), BOXES.holes(0, pattern())
    reference = pattern().frames
    assert by_method["holes", "pattern"].psnr == pytest.approx(
        region_psnr(decoded, reference, holes).mean())
    assert by_method["visible", "ALL"].psnr == pytest.approx(
        region_psnr(decoded, reference, ~holes).mean())
    assert by_method["holes", "ALL"].frames == 9
    assert by_method["holes", "ALL"].bpp == by_method["D-NeRV", "ALL"].bpp
    assert np.isnan(by_method["holes", "ALL"].ms_ssim)
    # explicit masks override the stored ones: a single box gives other numbers
    other = evaluate(inpainted[0], [clean_src], anchors=(), progress=False,
                     masks=BoxMasks(1, 4))
    assert [r.psnr for r in other if r.method == "holes"] != \
        [r.psnr for r in rows if r.method == "holes"]
    assert main(["eval", str(inpainted[0]), str(clean_src), "--anchors", "-q"]) == 0
    table = capsys.readouterr().out
    assert "holes" in table and "visible" in table


def test_mask_video(tmp_path, capsys):
    video = pattern(h=64, w=64)
    src = write_video(video.frames, tmp_path / "v.mp4")
    mask = np.zeros((9, 64, 64, 3), np.uint8)
    mask[:, 10:30, 20:40] = 255
    mask_dir = write_video(mask, tmp_path / "mask", fmt="png")
    assert np.array_equal(VideoMasks((mask_dir,)).holes(0, video), mask[..., 0] > 0)
    path = tmp_path / "v.dnerv"
    encode([src], path, epochs=1, batch_size=2, masks=VideoMasks((mask_dir,)), progress=False)
    assert load(path).header["inpainting"] == {"kind": "video"}
    with pytest.raises(MaskError, match="mask_video="):
        evaluate(path, [src], anchors=(), progress=False)
    rows = evaluate(path, [src], anchors=(), progress=False, masks=VideoMasks((mask_dir,)))
    assert [r.frames for r in rows if r.method == "holes"] == [9, 9]
    # errors: wrong size, too few frames, wrong number of mask videos, bad option mixes
    small = write_video(mask[:, :32], tmp_path / "small", fmt="png")
    short = write_video(mask[:4], tmp_path / "short", fmt="png")
    with pytest.raises(MaskError, match="64x32 with 9 frames but 'v' is 64x64 with 9"):
        video_holes(VideoMasks((small,)), [Video("v", video.frames, 25.0)])
    with pytest.raises(MaskError, match="with 4 frames"):
        video_holes(VideoMasks((short,)), [Video("v", video.frames, 25.0)])
    with pytest.raises(MaskError, match="1 videos need 1 mask videos, got 2"):
        video_holes(VideoMasks((mask_dir, mask_dir)), [Video("v", video.frames, 25.0)])
    out = str(tmp_path / "bad.dnerv")
    for options, message in [(["--mask-video", str(small)], "64x32"),
                             (["--mask-boxes", "2", "--mask-video", str(mask_dir)], "either"),
                             (["--mask-box-size", "8"], "need --mask-boxes"),
                             (["--mask-boxes", "2", "--mask-box-size", "100"], "do not fit")]:
        assert main(["encode", str(src), "-o", out, "--epochs", "1", *options]) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):                     # the parser checks bounds
        main(["encode", str(src), "-o", out, "--epochs", "1", "--mask-boxes", "0"])
    assert "--mask-boxes: must be an integer in 1..10000" in capsys.readouterr().err
    assert main(["eval", str(path), str(src), "--anchors", "-q"]) == 1
    assert "--mask-video" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask", "short", "small", "v.dnerv",
                                                          "v.mp4"]

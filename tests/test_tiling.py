import pytest
import torch

from dnerv_fast.tiling import patch_grid, stitch, tile


@pytest.mark.parametrize("h, w, patch", [(144, 176, (64, 64)), (272, 640, (256, 320)), (1080, 1920, (256, 320)),
                                          (64, 64, (64, 64)), (1, 3, (64, 128))])
def test_tile_then_stitch_round_trips(h, w, patch):
    frames = torch.randint(0, 256, (3, 3, h, w), dtype=torch.uint8)
    grid = patch_grid(h, w, patch)
    patches = tile(frames, grid)
    assert patches.shape == (grid.count, 3, 3, *patch)
    assert torch.equal(stitch(patches, grid), frames)


def test_patches_are_row_major_and_padding_repeats_edges():
    frames = torch.arange(144 * 176, dtype=torch.float32).view(1, 1, 144, 176)
    grid = patch_grid(144, 176, (64, 64))
    assert (grid.rows, grid.cols) == (3, 3)
    patches = tile(frames, grid)
    assert torch.equal(patches[1, 0, 0], frames[0, 0, :64, 64:128])
    assert torch.equal(patches[3, 0, 0], frames[0, 0, 64:128, :64])
    # bottom-right patch: rows 128..191, cols 128..191 of the edge-padded frame
    assert torch.equal(patches[8, 0, 0, :16, :48], frames[0, 0, 128:, 128:])
    assert torch.equal(patches[8, 0, 0, 20, 50], frames[0, 0, 143, 175])


def test_uvg_crop_mode_is_the_papers_upper_left_crop():
    grid = patch_grid(1080, 1920, (256, 320), fit="crop")
    assert (grid.rows, grid.cols, grid.output_size) == (4, 6, (1024, 1920))
    frames = torch.rand(1, 3, 1080, 1920)
    assert torch.equal(stitch(tile(frames, grid), grid), frames[:, :, :1024])


def test_tiling_errors():
    with pytest.raises(ValueError, match="smaller than one"):
        patch_grid(100, 100, (256, 320), fit="crop")
    grid = patch_grid(144, 176, (64, 64))
    with pytest.raises(ValueError, match="grid was made for 144x176"):
        tile(torch.zeros(1, 3, 100, 100), grid)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        tile(torch.zeros(3, 144, 176), grid)

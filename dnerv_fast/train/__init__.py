"""Training of D-NeRV for the codec: the loop, loss, learning-rate schedule, checkpoints,
data-parallel processes and inpainting masks."""
from dnerv_fast.train.trainer import TrainSettings, train

__all__ = ["TrainSettings", "train"]

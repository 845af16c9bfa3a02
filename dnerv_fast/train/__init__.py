"""Training of D-NeRV for the codec: data preparation, loss, schedule, loop, checkpoints."""
from dnerv_fast.train.data import PreparedVideo, prepare_video, restore_video
from dnerv_fast.train.trainer import TrainSettings, train

__all__ = ["PreparedVideo", "prepare_video", "restore_video", "TrainSettings", "train"]

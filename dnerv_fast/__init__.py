"""dnerv_fast: D-NeRV neural video representation as fast, real software.

- :class:`DNeRV` / :class:`NeRV`: the models (reference state_dict keys).
- :mod:`dnerv_fast.ops`: fused hot operations with run-time backends.
- :mod:`dnerv_fast.schedule`, :mod:`dnerv_fast.tiling`: clip/keyframe schedule, patches.
- :class:`DNeRVDataset`: decoded clips of a .dnerv file as a PyTorch dataset.
"""
from . import ops
from .configs import CONFIGS, ModelConfig, get_config
from .embedding import positional_encoding
from .model import CheckpointError, DNeRV, NeRV, infer_config, load_state_dict
from .schedule import clip_inputs, clip_schedule, keyframe_indices

__version__ = "0.1.0"
__all__ = ["DNeRV", "NeRV", "ModelConfig", "CONFIGS", "get_config", "ops", "positional_encoding",
           "clip_inputs", "clip_schedule", "keyframe_indices", "load_state_dict", "infer_config",
           "CheckpointError", "DNeRVDataset", "__version__"]


def __getattr__(name: str):
    # The dataset pulls in the codec (PyAV, Pillow, the entropy coder): load it on first use
    # so that importing dnerv_fast costs no more than importing the model.
    if name == "DNeRVDataset":
        from .dataset import DNeRVDataset
        return DNeRVDataset
    raise AttributeError(f"module 'dnerv_fast' has no attribute {name!r}")

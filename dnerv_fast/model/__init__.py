"""The D-NeRV network, the NeRV baseline, and checkpoint loading."""
from ..errors import CheckpointError
from .checkpoint import LoadReport, infer_config, load_state_dict, read_state_dict
from .dnerv import DNeRV
from .nerv import NeRV

__all__ = ["DNeRV", "NeRV", "CheckpointError", "LoadReport", "infer_config", "load_state_dict",
           "read_state_dict"]

"""Decoding-speed measurement: FPS, memory and a per-stage time breakdown."""
from .decode_speed import ProfileSettings, run_profile

__all__ = ["ProfileSettings", "run_profile"]

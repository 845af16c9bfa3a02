"""The D-NeRV codec: keyframe codecs, weight quantisation and entropy coding, the .dnerv
container, and the encode / decode / eval pipeline."""
from dnerv_fast.errors import (BitstreamError, CodecError, KeyframeCodecError,
                                     OutputExistsError, VideoReadError)

__all__ = ["CodecError", "BitstreamError", "KeyframeCodecError", "OutputExistsError",
           "VideoReadError"]

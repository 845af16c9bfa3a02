"""The D-NeRV codec: weight quantisation and entropy coding, the .dnerv container and its
validated header, and the encode / decode / eval pipeline (the keyframes' intra codecs are in
:mod:`dnerv_fast.media.keyframes`). The user-facing errors are re-exported here."""
from dnerv_fast.errors import (BitstreamError, CodecError, KeyframeCodecError, OutputExistsError,
                               VideoReadError)

__all__ = ["CodecError", "BitstreamError", "KeyframeCodecError", "OutputExistsError",
           "VideoReadError"]

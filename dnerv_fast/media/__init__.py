"""Pictures in and out: videos and frame folders read and written (:mod:`.video_io`), the
intra codecs that code keyframes (:mod:`.keyframes`), and generated test videos
(:mod:`.synthetic`)."""

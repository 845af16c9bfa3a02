"""Decoding-speed measurement: FPS, memory and a per-stage time breakdown
(:mod:`.decode_speed`), and the ``dnerv-fast profile`` command (:mod:`.commands`)."""

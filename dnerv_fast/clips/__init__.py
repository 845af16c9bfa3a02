"""The clip core, shared by training, decoding and the dataset: videos prepared as patch
sequences with their decoded keyframes (:mod:`.data`), batches of clips gathered from them,
and the network run on a batch with each keyframe encoded once (:mod:`.decoder`)."""

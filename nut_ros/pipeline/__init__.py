"""ROS-free streaming core: ``stream.StreamingPipeline`` (frames in, a live dynamic Gaussian map, its renders and
metric Gaussians out), ``backends`` (torch / onnxruntime / tensorrt), ``depth`` normalisation, ``optical`` frame
conversion, ``metrics`` and ``evaluation``. Submodules are imported explicitly so that ``types`` stays light."""

"""The orthographic rasterizer outside PyTorch: CUDA sources (``csrc/``), a driver-API launcher of the kernels
compiled by pycuda, and the TensorRT Python plugin built on it."""

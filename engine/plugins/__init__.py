"""The orthographic rasterizer outside PyTorch: a driver-API launcher of the kernels of ``nut_ros/render/csrc``
compiled by pycuda, and the TensorRT Python plugin built on it."""

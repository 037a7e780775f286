"""Deployment, above the core: ONNX export, TensorRT engine builder, the TensorRT backend runtime and the pycuda /
TensorRT-plugin launch paths of the rasterizer kernels (sources in ``nut_ros/render/csrc``)."""

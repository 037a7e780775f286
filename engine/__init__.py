"""Deployment: ONNX export, TensorRT engine builder and plugin sources (``engine/plugins``)."""

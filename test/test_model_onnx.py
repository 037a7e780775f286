"""encode and decode of the tiny config export to ONNX with static shapes and match onnxruntime."""
import numpy as np
import pytest
import torch

from nut_ros.core.model import FrameCache, build_model

ort = pytest.importorskip("onnxruntime")
GAUSSIAN_FIELDS = ("xyz", "velocity", "rgb", "opacity", "scale", "gamma", "t0")


class _Encode(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image, disparity):
        return tuple(self.model.encode(image, disparity))


class _Decode(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *tensors):
        k = len(FrameCache._fields)
        g = self.model.decode(FrameCache(*tensors[:k]), FrameCache(*tensors[k:]))
        return tuple(getattr(g, f) for f in GAUSSIAN_FIELDS)


def _run(path, inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)})


def test_tiny_exports(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    h, w = model.config.image_size
    rgb, disp = torch.rand(1, 3, h, w), torch.rand(1, 2, h, w)
    enc_path, dec_path = tmp_path / "encode.onnx", tmp_path / "decode.onnx"
    torch.onnx.export(_Encode(model).eval(), (rgb, disp), str(enc_path), input_names=["image", "disparity"],
                      output_names=list(FrameCache._fields), dynamo=False)
    with torch.no_grad():
        prev, cur = model.encode(rgb.roll(4, -1), disp), model.encode(rgb, disp)
        ref = model.decode(prev, cur)
    torch.onnx.export(_Decode(model).eval(), (*prev, *cur), str(dec_path), dynamo=False)
    # onnxruntime fuses and reorders float32 ops; 1e-4 leaves headroom for that, not for a wrong op
    for got, want in zip(_run(enc_path, (rgb, disp)), cur):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
    for got, field in zip(_run(dec_path, (*prev, *cur)), GAUSSIAN_FIELDS):
        np.testing.assert_allclose(got, getattr(ref, field).numpy(), atol=1e-4, rtol=1e-4, err_msg=field)

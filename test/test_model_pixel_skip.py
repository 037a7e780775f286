"""The input-anchored pixel skip of our configs: an untrained model already reproduces its input frame."""
import math

import torch

from nut_ros.core.model import build_model, static_gaussians
from nut_ros.core.pixel_skip import PixelSkip
from nut_ros.render import rasterize


def _image(h: int, w: int) -> torch.Tensor:
    """A smooth but structured RGB image (so a 2x2 box filter loses little)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    rgb = torch.stack([0.5 + 0.4 * torch.sin(6 * xx), 0.5 + 0.4 * torch.cos(5 * yy), 0.3 + 0.6 * xx * yy])
    return rgb.unsqueeze(0)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a - b) ** 2).mean()))


def test_block_mean_and_order():
    skip = PixelSkip(in_channels=5, factor=2, dim=8)
    x = torch.arange(2 * 5 * 4 * 6, dtype=torch.float32).reshape(2, 5, 4, 6)
    feats, mean_rgb = skip(x)
    assert feats.shape == (2, 6, 8) and mean_rgb.shape == (2, 6, 3)
    # Gaussian 4 = block row 1, column 1 -> pixels rows 2-3, columns 2-3
    expected = x[:, :3, 2:4, 2:4].mean(dim=(2, 3))
    torch.testing.assert_close(mean_rgb[:, 4], expected)


def test_untrained_tiny_reproduces_its_input():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    h, w = model.config.image_size
    rgb = _image(h, w)
    disp = torch.zeros(1, model.config.depth_channels, h, w)
    with torch.no_grad():
        g = static_gaussians(model.encode(rgb, disp), t0=1.0)
        # the anchor: colours equal the 2x2 block means (up to the 1e-3-scale random residual)
        block = torch.nn.functional.avg_pool2d(rgb, 2).flatten(2).transpose(1, 2)
        assert (g.rgb - block).abs().max() < 0.02
        out = rasterize(g.at(1.0), h, w, lowpass=model.config.raster_lowpass)
    # An untrained reference-style model renders noise (~10 dB); anchored colours with nearly opaque splats give
    # a blurred copy of the input. 20 dB leaves margin for the random scales/offsets of the untrained heads.
    assert _psnr(out.color, rgb) > 20.0


def test_reference_config_has_no_skip():
    cfg = build_model("tiny").config
    assert cfg.pixel_skip
    from nut_ros.core.config import get_config

    assert not get_config("streamsplat").pixel_skip

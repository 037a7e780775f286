"""Classical in-between baselines: blending and the bidirectional flow warp."""
import numpy as np

from nut_ros.pipeline.baselines import FlowWarp, blend


def _textured(shift: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.random((12, 20)).repeat(8, 0).repeat(8, 1)  # 96x160 blocks: texture DIS can follow
    xs = np.arange(160) - shift
    img = np.stack([np.interp(xs, np.arange(160), row) for row in base])
    return (np.repeat(img[..., None], 3, axis=2) * 255).astype(np.uint8)


def test_flow_warp_follows_a_translation_that_blending_ghosts():
    key0, key1, mid = _textured(0.0), _textured(6.0), _textured(3.0)
    warp = FlowWarp(key0, key1)
    inner = (slice(10, -10), slice(20, -20))
    err_warp = np.abs(warp.at(0.5) - mid)[inner].mean()
    err_blend = np.abs(blend(key0, key1, 0.5) - mid)[inner].mean()
    assert err_warp < 0.5 * err_blend
    np.testing.assert_allclose(warp.at(0.0), key0, atol=1e-3)
    np.testing.assert_allclose(warp.at(1.0), key1, atol=1e-3)
    np.testing.assert_allclose(np.median(warp.f01[..., 0][inner]), 6.0, atol=0.5)

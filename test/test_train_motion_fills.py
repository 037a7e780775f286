"""Depth from motion's own dense fills of packed real sequences, carried by the training pairs (a generated room
packed as the real sequences are)."""
import cv2
import numpy as np
import torch
from generated_room import H, K, W, pose, render

from nut_ros.train.rgbd_pairs import DEPTH_DOWN, RGBDPairs, cat
from nut_ros.train.motion_fills import SOURCES

POSES = [pose(x=0.04 * i, yaw_deg=0.4 * i) for i in range(6)]


def _pack(path) -> np.ndarray:
    rgbs, depths, truths = [], [], []
    for T in POSES:
        rgb, depth, _ = render(T)
        rgbs.append(cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        depths.append((cv2.resize(depth, (W // DEPTH_DOWN, H // DEPTH_DOWN), interpolation=cv2.INTER_NEAREST)
                       * 1000).astype(np.uint16))
        truths.append(depth)
    k = np.array([[K.fx, 0, K.cx], [0, K.fy, K.cy], [0, 0, 1]])
    np.savez_compressed(path, rgb=np.array(rgbs, dtype=object), depth=np.stack(depths), pose=np.stack(POSES),
                        K=np.stack([k] * len(POSES)), seq=np.zeros(len(POSES), int), val=np.zeros(len(POSES), bool),
                        size=np.array([H, W]))
    return np.stack(truths)


def test_pairs_carry_depth_from_motions_fill_in_the_true_unit(tmp_path):
    truths = _pack(tmp_path / "room.npz")
    pairs = RGBDPairs(tmp_path / "room.npz", (H, W), (H // 4, W // 4), torch.device("cpu"), fills=True)
    assert pairs.fill.shape[:2] == (len(POSES), len(SOURCES))
    has = torch.isfinite(pairs.fill).flatten(2).all(2)
    assert not has[0].any() and has[2:].all()  # the first frame has no reference yet
    for source in range(len(SOURCES)):  # odometry: metric as it comes; images alone: scaled by the median ratio
        for i in range(2, len(POSES)):
            truth = cv2.resize(truths[i], pairs.fill.shape[-1:-3:-1], interpolation=cv2.INTER_NEAREST)
            ratio = pairs.fill[i, source].numpy() * truth
            assert abs(np.median(ratio) - 1) < 0.05 and np.mean(np.abs(ratio - 1)) < 0.15, (source, i)
    assert 0.05 < pairs.fill_known[2:].float().mean() < 0.95
    batch = pairs.batch(0, torch.tensor([len(pairs) - 1]), source=1)
    assert batch.fill.shape == batch.depth.shape and batch.fill_known.dtype == torch.bool
    assert torch.isfinite(batch.fill).all() and (batch.fill > 0).all()
    first = int(torch.nonzero((pairs.pairs == 0).any(1))[0])  # a pair with the first frame, which has no fill
    batch = pairs.batch(0, torch.tensor([first]))
    frame = int((pairs.pairs[first] != 0).nonzero()[0])
    assert torch.all(batch.fill[0, 1 - frame] == 0) and (batch.fill[0, frame] > 0).all()  # 0: none, as the pipeline


def test_joined_batches_mark_the_samples_without_a_fill(tmp_path):
    _pack(tmp_path / "room.npz")
    pairs = RGBDPairs(tmp_path / "room.npz", (H, W), (H // 4, W // 4), torch.device("cpu"), fills=True)
    real = pairs.batch(0, torch.tensor([len(pairs) - 1]))
    other = pairs.batch(0, torch.tensor([len(pairs) - 1]))
    other.fill = other.fill_known = None  # as generated pairs come
    joined = cat([other, real])
    assert torch.isnan(joined.fill[0]).all() and torch.isfinite(joined.fill[1]).all()
    assert not joined.fill_known[0].any()
    assert cat([other, other]).fill is None

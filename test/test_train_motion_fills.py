"""Depth from motion's own dense fills of packed real sequences, carried by the training pairs (a generated room
packed as the real sequences are)."""
import json
import math

import cv2
import numpy as np
import torch
from generated_room import H, K, W, pose, render

from nut_ros.train.rgbd_pairs import DEPTH_DOWN, RGBDPairs, cat
from nut_ros.train.motion_fills import SOURCES
from nut_ros.train.trainer import TrainConfig, Trainer

SMALL_INPUT = {"image_size": (64, 128), "window": 128}  # the tiny architecture on a 4x smaller input

POSES = [pose(x=0.04 * i, yaw_deg=0.4 * i) for i in range(6)]


def _pack(path, top: int = 0) -> np.ndarray:
    """The room's frames packed as ``pack-rgbd`` packs (``top``: rows cropped off the top and the bottom)."""
    rgbs, depths, truths = [], [], []
    for T in POSES:
        rgb, depth, _ = render(T)
        rgb, depth = rgb[top:H - top], depth[top:H - top]
        rgbs.append(cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        h = depth.shape[0]
        depths.append((cv2.resize(depth, (W // DEPTH_DOWN, h // DEPTH_DOWN), interpolation=cv2.INTER_NEAREST)
                       * 1000).astype(np.uint16))
        truths.append(depth)
    k = np.array([[K.fx, 0, K.cx], [0, K.fy, K.cy - top], [0, 0, 1]])
    np.savez_compressed(path, rgb=np.array(rgbs, dtype=object), depth=np.stack(depths), pose=np.stack(POSES),
                        K=np.stack([k] * len(POSES)), seq=np.zeros(len(POSES), int), val=np.zeros(len(POSES), bool),
                        size=np.array([H - 2 * top, W]))
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
            assert np.mean(np.abs(ratio - 1)) < 0.15, (source, i)
            assert source == 1 or abs(np.median(ratio) - 1) < 0.05, i  # (the scaled one's median is 1 by design)
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


def test_stage3_on_fills_validates_both_sources(tmp_path):
    """The trainer with fills: real pairs carry depth from motion's own, validation scores both sources."""
    torch.set_num_threads(2)
    _pack(tmp_path / "room.npz", top=40)  # 160x320: the aspect of the test model's 64x128
    data = np.load(tmp_path / "room.npz", allow_pickle=True)
    both = {k: np.concatenate([data[k], data[k]]) for k in ("rgb", "depth", "pose", "K")}  # the frames twice:
    n = len(POSES)  # once for training, once (a sequence of its own) for validation
    np.savez_compressed(tmp_path / "both.npz", **both, seq=np.repeat([0, 1], n), val=np.repeat([False, True], n),
                        size=data["size"])
    cfg = TrainConfig(stage=3, out=str(tmp_path / "run"), model="tiny", steps=1, batch=2, val_every=1, val_clips=1,
                      warmup=1, device="cpu", amp=False, init=str(_stage1(tmp_path)), geometry_only=True,
                      rgbd=str(tmp_path / "both.npz"), depth_modes={"fill": 1.0},
                      model_overrides={**SMALL_INPUT, "fill_validity": "known"})
    assert Trainer(cfg).run()
    val = [json.loads(line)["val"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
           if "val" in line][-1]
    for source in ("real", "real_motion"):
        assert 0 < val[f"{source}_abs_rel_fill_input"] < 0.2, val  # depth from motion's own fill of the room
        assert math.isfinite(val[f"{source}_abs_rel_fill"]) and math.isfinite(val[f"{source}_psnr_fill"])
        assert math.isfinite(val[f"{source}_abs_rel_fill_unaligned"])
    assert 0 < val["real_abs_rel_fill_input_unaligned"] < 0.2, val  # with odometry the fill is metric
    # the second source repeats the first one's frames: their RGB-only depth and flow are scored once
    assert "real_abs_rel_rgbonly" in val and "real_flow_epe" in val
    assert not [k for k in val if k.startswith("real_motion_") and "fill" not in k], val


def _stage1(tmp_path):
    out = tmp_path / "s1"
    Trainer(TrainConfig(stage=1, out=str(out), model="tiny", model_overrides=SMALL_INPUT, steps=1, batch=1,
                        val_every=2, val_clips=1, warmup=1, device="cpu", amp=False)).run()
    return out


def test_the_rigid_flow_beside_a_depth_hole_is_that_of_the_known_pixels():
    """A sideways camera step over a wall at 2 m: the same flow at every pixel with depth; on a finer Gaussian grid
    the cells beside a hole keep it (not a blend with the hole's zeros)."""
    from nut_ros.train.rgbd_pairs import flow_at_grid, rigid_flow

    h, w = 72, 128
    depth = torch.full((1, 1, h // 4, w // 4), 2.0)
    depth[..., 6:9, 12:16] = 0  # a hole
    k = torch.tensor([[[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]]])
    moved = torch.eye(4)[None].clone()
    moved[0, 0, 3] = 0.1
    flow, valid = rigid_flow(depth, torch.eye(4)[None], moved, k, (h, w))
    grid_flow, grid_valid = flow_at_grid(flow, valid, (h, w))
    known = grid_valid[0, 0] > 0
    assert 0 < known.float().mean() < 1
    torch.testing.assert_close(grid_flow[0, 0][known], torch.full_like(grid_flow[0, 0][known], -5.0))

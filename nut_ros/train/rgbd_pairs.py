"""Real RGB-D sequences with camera poses as training pairs: images, metric depth and exact rigid flow.

Sources (``../shared/data/train_rgbd``, both CC BY 4.0, credited in docs/MODEL_CARD.md): TUM RGB-D
``freiburg1_rpy`` (Sturm et al. 2012; handheld Kinect rotating over a desk, motion-capture poses) and one TartanAir
trajectory (Wang et al. 2020; photo-realistic synthetic). :func:`pack` reads them once into a compact ``.npz``
(16:9 centre crop, RGB as JPEG at the model size, depth in millimetres at a quarter of it, camera-to-world poses of
the REP-103 optical frame, intrinsics at the RGB size) with a train/validation split: the last
``val_fraction`` of TUM is validation only. :class:`RGBDPairs` samples pairs of nearby frames on the training
device and computes, from depth and poses, the flow of every valid pixel into the other frame (static scenes: the
flow is the camera's rigid motion).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.core.geometry import resize_nearest
from nut_ros.core.rotations import quaternion_pose
from nut_ros.pipeline.sequences import TUM_FR1, tum_pose_at, undistort_tum
from nut_ros.train.depth_input import fill_at
from nut_ros.train.motion_fills import SOURCES, packed_fills

#: TartanAir's camera body frame is NED (x forward, y right, z down): its pose times this is the optical frame's
NED_FROM_OPTICAL = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
TARTAN_K = (320.0, 320.0, 320.0, 240.0)
DEPTH_DOWN = 4  # depth is packed at 1/4 of the RGB size
JPEG_QUALITY = 88  # of the packed colour


@dataclass
class PairBatch:
    """A batch of frame pairs with ground truth at the model resolution (float32, on one device)."""

    rgb: Tensor  # [B, 2, 3, H, W] in [0, 1]
    depth: Tensor  # [B, 2, 1, H, W] metres, 0 where unknown
    flow: Tensor  # [B, 2, 2, gh, gw] frame k's flow to the other frame, model pixels, on the Gaussian grid
    flow_valid: Tensor  # [B, 2, 1, gh, gw] 1 where the flow is known
    # [B, 2, 1, H, W] depth from motion's dense inverse depth of each frame: all 0 where it gave none, NaN where the
    # sample has no fills (generated pairs: training simulates one); None: no sample has any
    fill: Tensor | None = None
    fill_known: Tensor | None = None  # [B, 2, 1, H, W] bool: its measured pixels


def _pose(t: np.ndarray, q: np.ndarray, body_from_optical: np.ndarray | None = None) -> np.ndarray:
    pose = quaternion_pose(t, q)
    if body_from_optical is not None:
        pose[:3, :3] = pose[:3, :3] @ body_from_optical
    return pose


def _crop_169(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Centre rows of a 4:3 image cropped to 16:9, and the first kept row."""
    h, w = image.shape[:2]
    keep = round(w * 9 / 16)
    top = (h - keep) // 2
    return image[top:top + keep], top


def _frame(rgb_path: Path, depth_path: Path, k: tuple, size: tuple[int, int], jpeg_quality: int,
           tum: bool = False) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One frame: JPEG of the cropped, resized RGB; depth (mm, uint16) at 1/DEPTH_DOWN; K at ``size`` (H, W). TUM's
    frames (``tum``) are undistorted first, as the evaluation reads them
    (:func:`nut_ros.pipeline.sequences.undistort_tum`): the rigid flow of the pinhole ``K`` holds on them."""
    rgb = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
    depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
    if tum:
        rgb, depth = undistort_tum(rgb, cv2.INTER_LINEAR), undistort_tum(depth, cv2.INTER_NEAREST)
    rgb, top = _crop_169(rgb)
    depth, _ = _crop_169(depth)
    h, w = size
    s = w / rgb.shape[1]
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    depth = resize_nearest(depth, w // DEPTH_DOWN, h // DEPTH_DOWN)
    fx, fy, cx, cy = k
    # pixel centres at integer coordinates: u' = s (u + 0.5) - 0.5
    kk = np.array([[fx * s, 0, s * (cx + 0.5) - 0.5], [0, fy * s, s * (cy - top + 0.5) - 0.5], [0, 0, 1]])
    ok, jpg = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    assert ok
    return jpg.tobytes(), depth.astype(np.uint16), kk


def _tum(root: Path):
    frames = np.loadtxt(root / "frames.txt", comments="#")
    gt = np.loadtxt(root / "groundtruth.txt", comments="#")
    for index, stamp, _ in frames:
        pose = tum_pose_at(gt, stamp)
        if pose is not None:
            name = f"{int(index):06d}"
            yield root / "rgb" / f"{name}.jpg", root / "depth" / f"{name}.png", pose, TUM_FR1[0]


def _tartanair(root: Path):
    poses = np.loadtxt(root / "pose_left.txt")
    for i, row in enumerate(poses):
        name = f"{i:06d}"
        yield (root / "rgb" / f"{name}.jpg", root / "depth" / f"{name}.png", _pose(row[:3], row[3:], NED_FROM_OPTICAL),
               TARTAN_K)


def pack(train_rgbd: str | Path, out: str | Path, size: tuple[int, int] = (288, 512), tum_stride: int = 3,
         tartan_stride: int = 2, val_fraction: float = 0.2, val_stride: int = 6,
         jpeg_quality: int = JPEG_QUALITY) -> dict[str, int]:
    """Write the packed training set (colour as JPEG at ``jpeg_quality``); returns the frame counts per split."""
    root = Path(train_rgbd)
    records = {"rgb": [], "depth": [], "pose": [], "K": [], "seq": [], "val": []}
    tum = list(_tum(root / "tum_fr1_rpy"))
    n_train = int(len(tum) * (1 - val_fraction))
    chosen = [(f, 0, False) for f in tum[:n_train:tum_stride]] + [(f, 0, True) for f in tum[n_train::val_stride]]
    chosen += [(f, 1, False) for f in list(_tartanair(root / "tartanair_traj"))[::tartan_stride]]
    for (rgb_path, depth_path, pose, k), seq, val in chosen:
        jpg, depth, kk = _frame(rgb_path, depth_path, k, size, jpeg_quality, tum=seq == 0)
        for key, value in zip(records, (jpg, depth, pose, kk, seq + 2 * val, val)):
            records[key].append(value)
    np.savez_compressed(out, rgb=np.array(records["rgb"], dtype=object), depth=np.stack(records["depth"]),
                        pose=np.stack(records["pose"]), K=np.stack(records["K"]), seq=np.array(records["seq"]),
                        val=np.array(records["val"]), size=np.array(size))
    return {"train": int(len(chosen) - sum(records["val"])), "val": int(sum(records["val"]))}


def rigid_flow(depth0: Tensor, pose0: Tensor, pose1: Tensor, k: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Flow of frame 0's pixels into frame 1 from its depth ``[B,1,h,w]`` (metres, 0 unknown, at ``1/DEPTH_DOWN``),
    camera-to-world poses ``[B,4,4]`` and intrinsics ``k [B,3,3]`` at the image ``size`` (H, W): ``([B,2,h,w]``
    in image pixels at the depth grid, ``[B,1,h,w]`` valid)."""
    b, _, h, w = depth0.shape
    s = size[1] / w
    ys, xs = torch.meshgrid(torch.arange(h, device=depth0.device, dtype=torch.float64),
                            torch.arange(w, device=depth0.device, dtype=torch.float64), indexing="ij")
    u, v = s * (xs + 0.5) - 0.5, s * (ys + 0.5) - 0.5  # image pixels of the depth samples
    pix = torch.stack([u, v, torch.ones_like(u)]).reshape(1, 3, -1).expand(b, 3, -1)
    z = depth0.double().reshape(b, 1, -1)
    points = torch.linalg.solve(k.double(), pix) * z  # frame 0 optical
    rel = torch.linalg.solve(pose1.double(), pose0.double())  # frame 0 -> frame 1
    p1 = rel[:, :3, :3] @ points + rel[:, :3, 3:]
    proj = k.double() @ p1
    z1 = proj[:, 2:]
    uv1 = proj[:, :2] / z1.clamp_min(1e-6)
    flow = (uv1 - pix[:, :2]).reshape(b, 2, h, w)
    valid = ((z > 0) & (z1 > 0.05)).reshape(b, 1, h, w)
    return flow.float() * valid, valid.float()


def flow_at_grid(flow: Tensor, valid: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """:func:`rigid_flow`'s ``flow [B,2,h,w]`` and ``valid [B,1,h,w]`` resized to the Gaussian ``grid``: valid where
    the nearest depth pixel is, the flow blended bilinearly from the valid depth pixels alone (blending in a hole's
    zeros would pull the flow beside it towards 0)."""
    weight = F.interpolate(valid, size=grid, mode="bilinear", align_corners=False)
    flow = F.interpolate(flow * valid, size=grid, mode="bilinear", align_corners=False) / weight.clamp_min(1e-6)
    return flow, F.interpolate(valid, size=grid, mode="nearest")


class RGBDPairs:
    """Samples :class:`PairBatch` es from a packed file on ``device`` (frames decoded once, kept on the device)."""

    def __init__(self, path: str | Path, image_size: tuple[int, int], gaussian_grid: tuple[int, int],
                 device: torch.device, split: str = "train", max_gap: int = 2, seed: int = 0, fills: bool = False):
        """``fills``: also run depth from motion over the frames (:mod:`nut_ros.train.motion_fills`), so that each
        pair carries the dense fill the pipeline would feed for its frames."""
        data = np.load(path, allow_pickle=True)
        keep = data["val"] == (split == "val")
        h, w = image_size
        packed_h, packed_w = (int(x) for x in data["size"])
        rgbs = [cv2.cvtColor(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                for j in data["rgb"][keep]]
        rgb = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).float() / 255
        if (packed_h, packed_w) != (h, w):
            rgb = F.interpolate(rgb, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        k = torch.from_numpy(data["K"][keep]).clone()
        k[:, :2] *= w / packed_w  # same aspect: one scale; pixel centres at integers
        k[:, :2, 2] += 0.5 * (w / packed_w) - 0.5
        self.rgb = rgb.to(device)
        self.depth = torch.from_numpy(data["depth"][keep].astype(np.float32) / 1000)[:, None].to(device)
        self.pose = torch.from_numpy(data["pose"][keep]).to(device)
        self.k = k.to(device)
        seq = data["seq"][keep]
        self.fill = self.fill_known = None
        if fills:
            self._motion_fills(np.stack(rgbs), data["K"][keep], data["pose"][keep], seq)
        gaps = [(i, j) for i in range(len(seq)) for j in range(i + 1, min(i + max_gap + 1, len(seq)))
                if seq[i] == seq[j]]
        self.image_size, self.gaussian_grid, self.device = image_size, gaussian_grid, device
        self.pairs = torch.tensor(gaps, device=device)
        self.pairs = self.pairs[self._consistent(self.pairs)]
        self.rng = torch.Generator(device="cpu").manual_seed(seed)

    def _motion_fills(self, rgb: np.ndarray, k: np.ndarray, poses: np.ndarray, seq: np.ndarray) -> None:
        """Per frame and source (:data:`~nut_ros.train.motion_fills.SOURCES`) depth from motion's dense fill at
        its working resolution. A fill without odometry is relative: it is brought to the true depth's unit by
        the median ratio (the model sees it min-max normalised, the same either way; the ŷ target then is the true
        disparity in the fill's normalisation, as for a metric fill)."""
        fills, known = packed_fills(rgb, k, poses, seq)
        fill = torch.from_numpy(fills).to(self.depth.device)
        h, w = fill.shape[-2:]
        true_inv = 1.0 / F.interpolate(self.depth, size=(h, w), mode="nearest").clamp_min(1e-3)
        has_depth = F.interpolate(self.depth, size=(h, w), mode="nearest") > 0
        relative = SOURCES.index("motion")
        ratio = torch.where(has_depth[:, 0] & torch.isfinite(fill[:, relative]), true_inv[:, 0] / fill[:, relative],
                            torch.nan).flatten(1).nanmedian(1).values
        fill[:, relative] *= torch.nan_to_num(ratio, nan=1.0).view(-1, 1, 1)
        self.fill, self.fill_known = fill, torch.from_numpy(known).to(self.depth.device)

    def _consistent(self, pairs: Tensor, chunk: int = 16) -> Tensor:
        """Pairs whose rigid flow explains the images: warping the second frame by it brings it closer to the first
        than no motion does (drops pose/depth glitches: a tenth of TartanAir's far pairs, a few blurred TUM ones)."""
        keep = []
        for start in range(0, len(pairs), chunk):
            i, j = pairs[start:start + chunk, 0], pairs[start:start + chunk, 1]
            flow, valid = rigid_flow(self.depth[i], self.pose[i], self.pose[j], self.k[i], self.image_size)
            size = flow.shape[-2:]
            rgb0, rgb1 = (F.interpolate(self.rgb[x], size=size, mode="area") for x in (i, j))
            warped = warp(rgb1, flow * (size[1] / self.image_size[1]))
            moved = ((warped - rgb0).abs().mean(1, keepdim=True) * valid).flatten(1).sum(1)
            still = ((rgb1 - rgb0).abs().mean(1, keepdim=True) * valid).flatten(1).sum(1)
            keep.append((moved < 0.8 * still) & (valid.flatten(1).mean(1) > 0.3))
        return torch.cat(keep)

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, size: int, indices: Tensor | None = None, source: int | None = None) -> PairBatch:
        """``size`` random pairs (each in a random order), or the pairs at ``indices``. With fills, each sample's
        frames carry those of one source: ``source``, or a random one per sample."""
        if indices is None:
            indices = torch.randint(len(self.pairs), (size,), generator=self.rng)
            flip = torch.rand(size, generator=self.rng) < 0.5
        else:
            flip = torch.zeros(len(indices), dtype=torch.bool)
        if self.fill is not None and source is None:
            sources = torch.randint(self.fill.shape[1], (len(indices),), generator=self.rng).to(self.device)
        else:
            sources = torch.full((len(indices),), source or 0, device=self.device)
        pairs = self.pairs[indices.to(self.device)]
        pairs = torch.where(flip.to(self.device)[:, None], pairs.flip(1), pairs)
        i, j = pairs[:, 0], pairs[:, 1]
        flows, valids = [], []
        for a, c in ((i, j), (j, i)):
            f, v = flow_at_grid(*rigid_flow(self.depth[a], self.pose[a], self.pose[c], self.k[a], self.image_size),
                                self.gaussian_grid)
            flows.append(f)
            valids.append(v)
        depth = torch.stack([self.depth[i], self.depth[j]], 1)
        depth = F.interpolate(depth.flatten(0, 1), size=self.image_size, mode="nearest").unflatten(0, (-1, 2))
        fill = known = None
        if self.fill is not None:
            fill = torch.stack([self.fill[i, sources], self.fill[j, sources]], 1)
            known = torch.stack([self.fill_known[i, sources], self.fill_known[j, sources]], 1)
            fill, known = fill_at(torch.nan_to_num(fill, nan=0.0)[:, :, None].flatten(0, 1),
                                  known[:, :, None].flatten(0, 1), self.image_size)
            fill, known = fill.unflatten(0, (-1, 2)), known.unflatten(0, (-1, 2))
        return PairBatch(torch.stack([self.rgb[i], self.rgb[j]], 1), depth, torch.stack(flows, 1),
                         torch.stack(valids, 1), fill, known)


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """``image [B,C,h,w]`` sampled at each pixel plus its ``flow [B,2,h,w]`` (pixels of that grid): backward warp."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0] + 0.5) / w * 2 - 1, (ys + flow[:, 1] + 0.5) / h * 2 - 1], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def generated_pairs(clip, gaussian_grid: tuple[int, int]) -> PairBatch:
    """A generated two-frame :class:`~nut_ros.train.scenes.Clip` as a :class:`PairBatch` (exact flow of every
    pixel's surface point, pooled over each Gaussian's block)."""
    b, v, _, h, w = clip.rgb.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=clip.rgb.device, dtype=torch.float32),
                            torch.arange(w, device=clip.rgb.device, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys])
    flows = [clip.tracks[:, 0, v - 1, :2] - grid, clip.tracks[:, 1, 0, :2] - grid]
    flows = [F.adaptive_avg_pool2d(f, gaussian_grid) for f in flows]
    flow = torch.stack(flows, 1)
    return PairBatch(clip.rgb[:, [0, v - 1]], clip.depth[:, [0, v - 1]], flow, torch.ones_like(flow[:, :, :1]))


def cat(batches: list[PairBatch]) -> PairBatch:
    """Batches joined along the batch axis (fills NaN for the samples of a batch without them)."""
    joined = [torch.cat([getattr(b, f) for b in batches]) for f in ("rgb", "depth", "flow", "flow_valid")]
    if all(b.fill is None for b in batches):
        return PairBatch(*joined)
    fills = [b.fill if b.fill is not None else torch.full_like(b.depth, torch.nan) for b in batches]
    known = [b.fill_known if b.fill is not None else torch.zeros_like(b.depth, dtype=torch.bool) for b in batches]
    return PairBatch(*joined, torch.cat(fills), torch.cat(known))


def epe(pred: Tensor, true: Tensor, valid: Tensor) -> Tensor:
    """Mean end-point error per sample ``[B]`` of flows ``[B,2,h,w]`` over ``valid [B,1,h,w]``."""
    err = (pred - true).norm(dim=1, keepdim=True)
    return (err * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)

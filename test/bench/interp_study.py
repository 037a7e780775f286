"""Interpolation study: how a held-out frame between two key frames is best rendered, on camera bags: bags of the
training sequences choose settings (``nut_ros_make_bag`` of ``train_rgbd``), the evaluation bags only measure.

Replays a clip like ``make eval`` (RGB only, key frames every ``--stride`` frames, each encoded once by the torch
backend and decoded with the previous key frame, as the streaming pipeline does for an RGB-only stream) and renders
every held-out frame from the pair's Gaussians in each variant ``FLOW/COMPOSITE[/WINDOW]``, scored in StreamSplat's
256² protocol next to the blend of the true key frames and their bidirectional DIS flow warp
(:mod:`nut_ros.pipeline.baselines`):

* ``FLOW``: ``head`` (the model's own velocities: the velocity head, plus the learned flow of a model with
  ``motion_prior = "learned"``), ``zero`` (no motion), or the pipeline's classical prior added to the velocity head
  (replacing a learned flow, as the pipeline does): ``dis-PRESET-WIDTH[-check]`` (DIS preset, flow at most WIDTH px
  wide, forward-backward check) or ``s2d-WIDTH[-check]`` (the ``sparse_to_dense`` flow preset);
* ``COMPOSITE``: ``union`` (one render of both frames' Gaussians, normalised by opacity: the pipeline's
  ``interp_blend = "joint"``), ``separate`` (each frame's Gaussians rendered alone without their temporal fade and
  blended with weights ``(1-t)·alpha0`` and ``t·alpha1``: ``"per_frame"``, ``stream.per_frame_blend``; key frames are
  one render in both) or ``warp`` (no render: the true key frames warped by the FLOW's image-plane motion the way
  the flow-warp baseline warps them by DIS, :class:`~nut_ros.pipeline.baselines.FlowWarp`; it tells the flow's
  share of a variant's score from the render's);
* ``WINDOW`` (optional, default 0): the colour averaged over ``--samples`` renders in that time window
  (``stream.window_times``, the pipeline's ``interp_window``).

``nut_ros_make_bag ../shared/data/train_rgbd/tartanair_traj/rgb BAGS/tartanair --fps 10 --intrinsics 320,320,320,240
--resize 512x384`` then ``python test/bench/interp_study.py --bags BAGS --model tiny --clips tartanair
--variants head/union/0 head/union/0.8 s2d-256/union/0.8``
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.motion_prior import FlowPrior, grey_u8, with_prior
from nut_ros.pipeline.backends import Backend, make_backend
from nut_ros.pipeline.baselines import FlowWarp, blend
from nut_ros.pipeline.evaluation import image_scores
from nut_ros.pipeline.stream import per_frame_blend, resize_rgb, window_times
from nut_ros.ros.bag_io import read_camera_frames
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.inputs import frame_from_messages

BACKGROUND = (0.5, 0.5, 0.5)
COMPOSITES = ("union", "separate", "warp")


def parse_flow(spec: str, image_size, grid) -> FlowPrior | str:
    if spec in ("head", "zero"):
        return spec
    name, *rest = spec.split("-")
    preset = rest.pop(0) if name == "dis" and rest else "sparse_to_dense"
    if name not in ("dis", "s2d") or len(rest) not in (1, 2) or not rest[0].isdigit() \
            or rest[1:] not in ([], ["check"]):
        raise ValueError(f"unknown flow {spec!r}: head, zero, dis-PRESET-WIDTH[-check] or s2d-WIDTH[-check]")
    return FlowPrior(image_size, grid, preset, int(rest[0]), len(rest) == 2)


def parse_variant(variant: str) -> tuple[str, str, float]:
    """``FLOW/COMPOSITE[/WINDOW]`` -> (flow spec, composite, window)."""
    flow, composite, *window = variant.split("/")
    if composite not in COMPOSITES or len(window) > 1:
        raise ValueError(f"unknown variant {variant!r}: FLOW/COMPOSITE[/WINDOW], COMPOSITE one of {COMPOSITES}")
    try:
        return flow, composite, float(window[0]) if window else 0.0
    except ValueError:
        raise ValueError(f"variant {variant!r}: WINDOW must be a number") from None


def render(backend: Backend, g: Gaussians, t: float, composite: str, window: float = 0.0,
           samples: int = 5) -> np.ndarray:
    """The pair ``g`` rendered by ``backend`` at pair time ``t`` as an ``[H, W, 3]`` float image (the mean over the
    window's renders)."""
    times = window_times(t, window, samples)
    return sum(_render_at(backend, g, s, composite) for s in times) / len(times)


def _render_at(backend: Backend, g: Gaussians, t: float, composite: str) -> np.ndarray:
    if composite == "separate" and 0 < t < 1:
        out = per_frame_blend(backend, g, t, BACKGROUND)
    elif composite in COMPOSITES:
        out = backend.render(g, t, BACKGROUND)
    else:
        raise ValueError(f"unknown composite {composite!r}: one of {COMPOSITES}")
    return out.color_normalized(BACKGROUND)[0].clamp(0, 1).permute(1, 2, 0).double().numpy()


def image_flows(g: Gaussians, image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The pair's forward and backward flow ``[H, W, 2]`` (model pixels) from its Gaussians' image-plane velocities
    (:mod:`nut_ros.core.motion_prior`'s units; frame 1's velocities are minus its backward flow), bilinearly resized
    from the Gaussian grid to the image."""
    h, w = image_size
    v = g.velocity[0].float()
    n = v.shape[0] // 2
    flows = []
    for part, sign in ((v[:n], 1.0), (v[n:], -1.0)):
        f = sign * torch.stack([part[:, 0] * (w / 2), -part[:, 2] * (h / 2)]).reshape(1, 2, *grid)
        if tuple(grid) != (h, w):
            f = torch.nn.functional.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)
        flows.append(f[0].permute(1, 2, 0).numpy())
    return flows[0], flows[1]


def study_clip(bag: str, backend: Backend, variants: list[str], stride: int,
               samples: int = 5, max_frames: int | None = None) -> dict[str, float]:
    cfg = backend.model_config
    size = cfg.image_size
    no_depth = torch.zeros(1, cfg.depth_channels, *size)  # an RGB-only stream
    parsed = {v: parse_variant(v) for v in variants}
    flows = {spec: parse_flow(spec, size, cfg.gaussian_grid) for spec, _, _ in parsed.values()}
    scores: dict[str, list[float]] = {"blend": [], "flow_warp": []}
    held, prev = [], None  # prev: (stamp, model-resolution image [3,h,w], backend handle) of the last key frame
    for i, cam in enumerate(read_camera_frames(bag, "/camera/image_raw", None, None)):
        if max_frames is not None and i >= max_frames:
            break
        frame = frame_from_messages(Matched(cam.stamp_ns, cam.image, None, None), 0.001).frame
        x = resize_rgb(frame.rgb, *size)
        if i % stride:
            held.append((frame.stamp_ns, x[0].permute(1, 2, 0).double().numpy()))
            continue
        handle = backend.encode(x, no_depth)
        if prev is not None:
            t0_stamp, prev_x, prev_handle = prev
            g, greys = backend.decode(prev_handle, handle), (grey_u8(prev_x), grey_u8(x[0]))
            g_head = g
            if cfg.motion_prior == "learned":  # a classical prior replaces the learned flow
                backend.use_learned_motion(False)
                g = backend.decode(prev_handle, handle)
                backend.use_learned_motion(True)
            moved = {}
            for spec, flow in flows.items():
                if isinstance(flow, FlowPrior):
                    moved[spec] = with_prior(g, flow.pair(*greys)[None])
                elif flow == "head":
                    moved[spec] = g_head
                else:
                    moved[spec] = dataclasses.replace(g, velocity=torch.zeros_like(g.velocity))
            k0, k1 = (a.permute(1, 2, 0).double().numpy() for a in (prev_x, x[0]))
            warp = FlowWarp(k0, k1)
            for stamp, true in held:
                t = (stamp - t0_stamp) / (frame.stamp_ns - t0_stamp)
                scores["blend"].append(image_scores(blend(k0, k1, t), true, with_ssim=False)["psnr_256"])
                scores["flow_warp"].append(image_scores(warp.at(t), true, with_ssim=False)["psnr_256"])
                for v, (spec, composite, window) in parsed.items():
                    if composite == "warp":
                        img = FlowWarp(k0, k1, image_flows(moved[spec], size, cfg.gaussian_grid)).at(t)
                    else:
                        img = render(backend, moved[spec], t, composite, window, samples)
                    scores.setdefault(v, []).append(image_scores(img, true, with_ssim=False)["psnr_256"])
        held, prev = [], (frame.stamp_ns, x[0], handle)
    return {k: float(np.mean(v)) for k, v in scores.items() if v}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bags", required=True, help="folder of the evaluation bags (make eval's WORK/bags)")
    ap.add_argument("--clips", nargs="+", required=True)
    ap.add_argument("--variants", nargs="+", required=True, help="FLOW/COMPOSITE, see above")
    ap.add_argument("--model", default="small")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--samples", type=int, default=5, help="renders averaged over a variant's WINDOW")
    ap.add_argument("--max-frames", type=int, default=None, help="read at most this many frames of each clip")
    args = ap.parse_args(argv)
    backend = make_backend("torch", args.model, args.checkpoint, args.device)
    results = {}
    for clip in args.clips:
        with torch.no_grad():
            results[clip] = study_clip(f"{args.bags}/{clip}", backend, args.variants, args.stride, args.samples,
                                       args.max_frames)
        print(clip, " ".join(f"{k} {v:.2f}" for k, v in results[clip].items()), flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

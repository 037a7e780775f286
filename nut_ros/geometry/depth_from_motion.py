"""Depth from the camera's own motion: semi-dense inverse depth of the newest frame from a recent frame of the
stream, with a confidence, and its dense fill for the model's depth input.

Per frame (grey, at most ``max_width`` pixels wide):

1. reference: among the last ``window`` frames whose tracked corners (Lucas-Kanade, forward-backward checked) moved
   by at least ``min_motion_px`` (median), newest first, the first with ``target_parallax_px`` of parallax, else the
   one with the most (at most ``max_attempts`` pose estimates);
2. motion: the frames' ``Frame.camera_pose`` when both have one (metric translation, so metric inverse depth),
   else the essential matrix of the tracks (5-point, RANSAC, cheirality; unit translation, relative depth). A
   homography of the form ``K R K⁻¹`` that explains the tracks (the camera turned in place) or a median parallax
   after removing the rotation below ``min_parallax_px`` gives no output;
3. dense matches: the reference warped by the rotation (``K R K⁻¹``), then DIS flow from the current frame, so the
   flow is the translation's parallax alone;
4. inverse depth per pixel by least squares along both image axes (:func:`.two_view.triangulate_matches`), kept
   where it is in front of both cameras, within ``max_epipolar_px`` of its epipolar line (a moving object or a
   wrong match is off it), photometrically consistent, and precise: ``σ_ρ/ρ`` below ``max_rel_sigma`` for a match
   error of ``match_sigma_px`` (no depth near the epipole or where the parallax is short);
5. the dense fill (:func:`.densify.densify`), clipped to the robust range of the kept values.

A frame that gets no depth of its own (the camera stopped, turned in place, or moved too little) holds the last
estimate for up to ``max_hold`` frames, warped into it by the homography of the tracks between them (exact for a
turn in place; the small translation that gave too little parallax is ignored).

Everything is a static-scene assumption: pixels of moving objects fail the epipolar test only when they move off
their epipolar line.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.densify import densify, push_pull
from nut_ros.geometry.two_view import (RelativePose, apply_homography, camera_matrix, corners, essential_pose,
                                       is_pure_rotation, pose_from_odometry, rotation_homography, rotation_parallax,
                                       track_points, triangulate_matches)


@dataclass(frozen=True)
class MotionDepthConfig:
    """Settings of :class:`DepthFromMotion` (pixels are at the working resolution)."""

    max_width: int = 256  # working resolution: the frame is shrunk (by area) to at most this wide
    window: int = 6  # recent frames kept as reference candidates
    max_attempts: int = 3  # reference candidates whose pose is estimated per frame
    max_points: int = 300  # corners tracked for the reference choice and the pose
    min_tracks: int = 30  # fewer surviving tracks: the reference is too far (or the image is blank)
    min_motion_px: float = 4.0  # median track motion that makes a frame a reference candidate
    min_parallax_px: float = 2.0  # median parallax (rotation removed) below this: no depth
    target_parallax_px: float = 6.0  # the first candidate with this much parallax is taken (else the one with most)
    ransac_px: float = 1.0  # essential-matrix and homography inlier threshold
    max_epipolar_px: float = 1.5  # a match farther from its epipolar line is not static (or wrong)
    max_photometric: float = 20.0  # grey levels between a pixel and its match
    min_gradient: float = 6.0  # grey levels per pixel (3x3 Sobel / 4, smoothed): flat regions' matches are guesses
    match_sigma_px: float = 0.5  # assumed error of a dense match, for the depth's precision
    max_rel_sigma: float = 0.15  # keep pixels whose relative inverse-depth error is below this
    min_coverage: float = 0.05  # fewer kept pixels than this share of the image: no depth
    dis_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    max_hold: int = 6  # frames the last estimate is held (warped) while no new one can be made; 0: never


@dataclass
class MotionDepth:
    """Depth of one frame from motion, at the working resolution ``[h, w]`` (float32)."""

    inv_depth: np.ndarray  # semi-dense inverse depth (1/m when ``metric``), NaN where none
    confidence: np.ndarray  # in [0, 1], 0 where none
    dense: np.ndarray  # inverse depth filled everywhere (:func:`nut_ros.geometry.densify.densify`)
    metric: bool
    reference_stamp_ns: int
    parallax_px: float  # median parallax of the tracks after removing the rotation
    held_frames: int = 0  # > 0: the estimate of that many frames ago, warped into this one (no parallax now)

    @property
    def coverage(self) -> float:
        """Share of pixels with a semi-dense value."""
        return float((self.confidence > 0).mean())


@dataclass
class _Kept:
    grey: np.ndarray
    stamp_ns: int
    pose: np.ndarray | None


class DepthFromMotion:
    """Feed every frame of a stream with :meth:`estimate`; ``last_reason`` says why the last one gave no depth."""

    def __init__(self, config: MotionDepthConfig = MotionDepthConfig()):
        self.config = config
        self._window: deque[_Kept] = deque(maxlen=config.window)
        self._dis = cv2.DISOpticalFlow_create(config.dis_preset)
        self._last: tuple[MotionDepth, np.ndarray] | None = None  # the last estimate and its grey image
        self.last_reason = ""

    def reset(self) -> None:
        self._window.clear()
        self._last = None

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """``(w, h)`` of the working images: the input shrunk to ``max_width`` wide (never enlarged)."""
        if width <= self.config.max_width:
            return width, height
        return self.config.max_width, max(8, round(height * self.config.max_width / width))

    def estimate(self, rgb: np.ndarray, stamp_ns: int, intrinsics: Intrinsics,
                 camera_pose: np.ndarray | None = None) -> MotionDepth | None:
        """Depth of ``rgb [H, W, 3]`` uint8 (``intrinsics`` of that size; ``camera_pose`` 4x4 T_world<-camera in
        metres, or None) from the kept frames; the frame is kept for the next ones either way."""
        w, h = self.working_size(rgb.shape[1], rgb.shape[0])
        grey = cv2.cvtColor(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        K = camera_matrix(intrinsics.scaled(w, h))
        try:
            out = self._estimate(grey, stamp_ns, K, camera_pose)
            if out is None:
                out = self._hold(grey)
            self._last = None if out is None else (out, grey)
            return out
        finally:
            self._window.append(_Kept(grey, stamp_ns, None if camera_pose is None else np.asarray(camera_pose)))

    def _estimate(self, grey, stamp_ns, K, pose) -> MotionDepth | None:
        c = self.config
        if not self._window:
            self.last_reason = "no_reference"
            return None
        if self._window[-1].grey.shape != grey.shape:
            self._window.clear()
            self.last_reason = "no_reference"
            return None
        p0 = corners(grey, c.max_points, max(grey.shape) / 40)
        attempts, self.last_reason, best = 0, "static", None
        p_cur, p_ref = track_points(grey, self._window[0].grey, p0)  # the oldest frame moved most, as a rule
        if len(p_cur) >= c.min_tracks and np.median(np.linalg.norm(p_cur - p_ref, axis=1)) < c.min_motion_px:
            return None  # a still camera: one tracking instead of one per kept frame
        for ref in reversed(self._window):
            p_cur, p_ref = track_points(grey, ref.grey, p0)
            if len(p_cur) < c.min_tracks:
                self.last_reason = "lost_tracks"
                break  # older frames share even less with this one
            if np.median(np.linalg.norm(p_cur - p_ref, axis=1)) < c.min_motion_px:
                continue
            if attempts == c.max_attempts:
                break
            attempts += 1
            found = self._relative_pose(p_cur, p_ref, K, pose, ref.pose)
            if found is None:
                continue
            rel, inliers = found
            parallax = float(np.median(rotation_parallax(p_cur[inliers], p_ref[inliers], rel.R, K)))
            if parallax < c.min_parallax_px:
                self.last_reason = "short_parallax"
                continue
            if best is None or parallax > best[2]:
                best = (ref, rel, parallax)
            if parallax >= c.target_parallax_px:
                break
        return None if best is None else self._depth(grey, *best, K)

    def _hold(self, grey: np.ndarray) -> MotionDepth | None:
        """The last estimate warped into ``grey`` by the homography of the tracks between them, or None."""
        if self._last is None or self._last[0].held_frames >= self.config.max_hold:
            return None
        last, last_grey = self._last
        if last_grey.shape != grey.shape:
            return None
        p_cur, p_last = track_points(grey, last_grey, corners(grey, self.config.max_points, max(grey.shape) / 40))
        if len(p_cur) < self.config.min_tracks:
            return None
        H, inliers = cv2.findHomography(p_cur, p_last, cv2.RANSAC, 2 * self.config.ransac_px)
        if H is None or inliers.mean() < 0.5:
            return None
        h, w = grey.shape

        def warp(img, interpolation):
            return cv2.warpPerspective(img, H, (w, h), flags=interpolation | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)

        dense = warp(last.dense, cv2.INTER_LINEAR)
        seen = np.isfinite(dense)
        if seen.mean() < 0.5:
            return None
        dense = np.clip(push_pull(np.nan_to_num(dense), seen.astype(np.float32)), np.nanmin(dense), np.nanmax(dense))
        confidence = np.nan_to_num(warp(last.confidence, cv2.INTER_NEAREST))
        inv = np.where(confidence > 0, warp(last.inv_depth, cv2.INTER_NEAREST), np.nan).astype(np.float32)
        return MotionDepth(inv, confidence, dense.astype(np.float32), last.metric, last.reference_stamp_ns,
                           last.parallax_px, last.held_frames + 1)

    def _relative_pose(self, p_cur, p_ref, K, pose, ref_pose) -> tuple[RelativePose, np.ndarray] | None:
        c = self.config
        if pose is not None and ref_pose is not None:
            rel = pose_from_odometry(pose, ref_pose)
            if np.linalg.norm(rel.t) < 1e-6:
                self.last_reason = "short_parallax"
                return None
            return rel, np.ones(len(p_cur), bool)
        if is_pure_rotation(p_cur, p_ref, K, c.ransac_px):
            self.last_reason = "rotation"
            return None
        found = essential_pose(p_cur, p_ref, K, c.ransac_px, c.min_tracks)
        if found is None:
            self.last_reason = "pose_failed"
        return found

    def _depth(self, grey, ref: _Kept, rel: RelativePose, parallax: float, K) -> MotionDepth | None:
        c = self.config
        h, w = grey.shape
        H = rotation_homography(rel.R, K)
        warped = cv2.warpPerspective(ref.grey, H, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderValue=0)
        flow = self._dis.calc(grey, warped, None)
        gu, gv = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        target = np.stack([gu + flow[..., 0], gv + flow[..., 1]], -1)
        x_ref = apply_homography(H, target.reshape(-1, 2).astype(np.float64)).reshape(h, w, 2)
        tri = triangulate_matches(np.stack([gu, gv], -1).astype(np.float64), x_ref, rel, K)
        matched = cv2.remap(warped, target[..., 0], target[..., 1], cv2.INTER_LINEAR, borderValue=0)
        inside = (x_ref[..., 0] >= 0) & (x_ref[..., 0] <= w - 1) & (x_ref[..., 1] >= 0) & (x_ref[..., 1] <= h - 1)
        photometric = np.abs(matched.astype(np.float32) - grey.astype(np.float32))
        rel_sigma = c.match_sigma_px / np.maximum(tri.px_per_rho * tri.inv_depth, 1e-12)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        texture = cv2.blur(np.sqrt(gx * gx + gy * gy) / 4, (3, 3))
        keep = (np.isfinite(tri.inv_depth) & inside & (texture >= c.min_gradient) & (tri.epipolar_px < c.max_epipolar_px)
                & (photometric < c.max_photometric) & (rel_sigma < c.max_rel_sigma))
        if keep.mean() < c.min_coverage:
            self.last_reason = "low_coverage"
            return None
        confidence = np.where(keep, 1.0 - rel_sigma / c.max_rel_sigma, 0.0).astype(np.float32)
        inv = np.where(keep, tri.inv_depth, np.nan).astype(np.float32)
        lo, hi = np.percentile(inv[keep], [1, 99])
        inv = np.where(keep, np.clip(inv, lo, hi), np.nan).astype(np.float32)
        dense = densify(np.nan_to_num(inv), confidence, grey)
        self.last_reason = ""
        return MotionDepth(inv, confidence, dense, rel.metric, ref.stamp_ns, parallax)

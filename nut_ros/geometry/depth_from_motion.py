"""Depth from the camera's own motion: semi-dense inverse depth of the newest frame, fused over the stream (a depth
filter), with a confidence, and its dense fill for the model's depth input.

Per frame (grey, at most ``max_width`` pixels wide):

0. focal length: with odometry on this frame and the previous one, the tracks between them calibrate the camera's
   focal length (:mod:`.focal`; ``calibrate_focal``): a camera model whose focal length is off scales metric depth
   by as much. When the focal length applied changes, the fused map's inverse depths follow (``ρ ∝ 1/f``);
1. propagation: the fused map of the previous frame (:mod:`.depth_filter`, per pixel a Gaussian inverse depth) is
   carried into this one by the relative pose: from the frames' ``Frame.camera_pose`` when both have one (odometry:
   exact and metric), else from the tracks of this frame's corners into the previous one against the fused inverse
   depth there (PnP in RANSAC, then Levenberg-Marquardt: the pose in the map's own unit); every pixel's variance
   grows by ``process_noise``. A metric map keeps its unit over frames without odometry (the PnP pose is in
   metres), ``max_hold`` of them in a row at most; no pose (too few tracks, or odometry back under a relative map)
   drops the map;
2. reference: among the last ``window`` frames whose tracked corners (Lucas-Kanade, forward-backward checked) moved
   by at least ``min_motion_px`` (median), newest first, the first with ``target_parallax_px`` of parallax, else the
   one with the most (at most ``max_attempts`` pose estimates). First, the camera counts as still (no measurement)
   when the strongest ``static_points`` corners of the frame halved moved by less than ``min_motion_px`` into the
   oldest frame halved (counted in pixels of the whole frame; tracked with the cheaper :data:`.two_view.STILL_LK`;
   within the factor ``still_margin`` of it, the tracks of every corner decide: on the generated room of the tests a
   camera moving 4 cm per frame moves 4.03 px in the median of all corners, 4.29 px in that of the strongest 100 at
   half size): a still camera costs their tracks alone (the frame's own corners are detected only when it moves,
   or when odometry's focal calibration or the held map's pose tracks it).
   Where the tracks into the newest frame are made already (odometry's focal calibration, the map's pose) and moved
   by ``min_motion_px``, the camera moves and the oldest frame is not asked (tracks into a frame a whole window back
   cost the most: 2.4 ms of 27 per frame on TUM fr1_rpy; on its training part 9 frames of 185 changed without
   odometry, the AbsRel by at most -0.002, none with; TartanAir none). With odometry the tracks into a candidate
   other than the newest frame only measure its motion and parallax (medians) and whether enough survive: the
   strongest ``odometry_points`` corners are tracked, and as large a share of them must survive as of all corners
   (TUM fr1_rpy train with poses, some 150 corners a frame: 21.5 -> 19.3 ms per frame on the VM, the dense fill's
   median-scaled AbsRel 0.259 -> 0.255, metric 0.348 -> 0.342, the same 183 frames with depth, one held frame's
   scale+shift fit off (0.40 -> 19.1); TartanAir, mostly with fewer corners: 7 of 157 frames changed, every mean
   within 0.001; without the lost-tracks share 6 of those TUM frames had no depth);
3. motion: the odometry poses when both frames have one (metric), else the essential matrix of the tracks (5-point,
   RANSAC, cheirality; unit translation, relative depth). A homography of the form ``K R K⁻¹`` that explains the
   tracks (the camera turned in place) or a median parallax after removing the rotation below ``min_parallax_px``
   gives no measurement;
4. dense matches: the reference warped by the rotation (``K R K⁻¹``), then DIS flow from the current frame, so the
   flow is the translation's parallax alone;
5. measurement: inverse depth per pixel by least squares along both image axes
   (:func:`.two_view.triangulate_matches`), kept where it is in front of both cameras, within ``max_epipolar_px`` of
   its epipolar line (a moving object or a wrong match is off it), photometrically consistent, on texture, and
   precise: ``σ_ρ = match_sigma_px / (pixels per unit ρ)``, ``σ_ρ/ρ`` below ``max_rel_sigma`` (no depth near the
   epipole or where the parallax is short; with odometry below ``odometry_rel_sigma``: the poses are exact, so the
   match error is all the error, and the fusion confirms such rough pixels before they are output; without odometry
   the essential matrix's own error grows where the parallax is short, and rough pixels made things worse on the
   training sequences); with odometry ``σ_ρ`` also has the baseline's own error, ``ρ · odometry_noise_m / |t|``
   (every pixel of a short baseline shares it: on TUM fr1_rpy train, 0.4-2 cm per pair, 3 mm takes the semi-dense
   metric AbsRel from 0.314 to 0.291 and the dense fill's from 0.359 to 0.346; TartanAir's 8 cm baselines are
   unaffected); values beyond its 1st/99th percentiles are clipped;
6. fusion: without odometry the measurement (unit translation) is first brought to the map's unit by the median
   ratio of the two on their overlap (less than ``min_scale_pixels``: the measurement starts a new map if it covers
   ``min_coverage``, else it is left out); then
   :func:`.depth_filter.fuse`: inverse-variance weighting; a pixel more than ``max_sigmas`` off is forgotten; one the
   measurement does not confirm gains ``unconfirmed_noise``. Pixels whose ``σ_ρ/ρ`` exceeds ``forget_rel_sigma`` are
   forgotten. A new map needs ``min_coverage``;
7. output: the semi-dense map is the pixels with ``σ_ρ/ρ`` below ``max_rel_sigma`` fused from at least
   ``min_confirmations`` measurements (all precise pixels while those cover less than ``min_coverage``); the dense
   fill (:func:`.densify.densify`) weighs every precise pixel by ``1 - (σ_ρ/ρ)/max_rel_sigma`` times its share of
   ``2 min_confirmations`` measurements (while the precise pixels cover less than ``min_coverage``, all the map's
   pixels against ``forget_rel_sigma`` instead: a weak depth rather than none); the confidence is that weight.
   The fill also pulls every pixel weakly (``plane_prior``) towards the plane of the known values, so the large
   holes (walls, floors) follow the scene's slant instead of flattening. On the training sequences (TartanAir every
   frame; TUM fr1_rpy's first 80 %, every 3rd) with their poses as odometry, ``ε = 0.003`` took the dense fill's
   scale+shift AbsRel from 0.307 to 0.284 (TartanAir) and 0.214 to 0.208 (TUM), median-scaled 0.376 to 0.342 and
   0.253 to 0.259, metric 0.711 to 0.593 and 0.344 to 0.348 (``ε = 0.01`` put some frames' aligned disparities
   below 0). Without odometry the map's slant is the essential matrix's as much as the scene's where the camera
   mostly turns (on TUM fr1_rpy train, with the rotation's flow 5x the parallax in the median, the translation
   direction is off by 38° in the median against the motion capture; TartanAir's by 3°, its rotation's flow 0.8x the
   parallax): there the prior extended a wrong slant (on TUM two frames aligned to negative disparities: scale+shift
   0.219 to 0.298), so without odometry it applies only while the last measurement's rotation flow (median over the
   tracks) is below ``plane_max_turn`` times its parallax: with 2 (1.5 to 3 alike) TartanAir went from 0.366 to
   0.337 (median-scaled 0.432 to 0.413) on the 75 % of its frames that pass, TUM stayed at 0.219 (0.288; 23 % pass).

A frame without a measurement of its own (the camera stopped, turned in place, or moved too little) gets the
propagated map alone, for up to ``max_hold`` frames in a row (then the map is dropped).

Everything is a static-scene assumption: pixels of moving objects fail the epipolar test only when they move off
their epipolar line, and the fusion's consistency test only when they move by more than the spread.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.densify import densify
from nut_ros.geometry.depth_filter import InverseDepthMap, fuse, median_scale, propagate
from nut_ros.geometry.focal import FocalCalibration, with_focal_scale
from nut_ros.geometry.two_view import (RelativePose, apply_homography, camera_matrix, corners, essential_pose,
                                       is_pure_rotation, pose_from_odometry, rotation_homography, rotation_parallax,
                                       STILL_LK, STILL_SCALE, track, track_points, triangulate_matches)


@dataclass(frozen=True)
class MotionDepthConfig:
    """Settings of :class:`DepthFromMotion` (pixels are at the working resolution)."""

    max_width: int = 256  # working resolution: the frame is shrunk (by area) to at most this wide
    window: int = 6  # recent frames kept as reference candidates
    max_attempts: int = 3  # reference candidates whose pose is estimated per frame
    max_points: int = 300  # corners tracked for the reference choice and the pose
    odometry_points: int = 100  # with odometry: the strongest corners tracked into reference candidates but the newest
    static_points: int = 100  # the strongest corners of the frame halved tracked into the oldest: is it still?
    still_margin: float = 0.75  # their median motion within this factor of min_motion_px: every corner's decides
    min_tracks: int = 30  # fewer surviving tracks: the reference is too far (or the image is blank)
    min_motion_px: float = 4.0  # median track motion that makes a frame a reference candidate
    min_parallax_px: float = 2.0  # median parallax (rotation removed) below this: no depth
    target_parallax_px: float = 6.0  # the first candidate with this much parallax is taken (else the one with most)
    ransac_px: float = 1.0  # essential-matrix and homography inlier threshold
    max_epipolar_px: float = 1.5  # a match farther from its epipolar line is not static (or wrong)
    max_photometric: float = 20.0  # grey levels between a pixel and its match
    min_gradient: float = 6.0  # grey levels per pixel (3x3 Sobel / 4, smoothed): flat regions' matches are guesses
    match_sigma_px: float = 0.5  # assumed error of a dense match, for the depth's precision
    max_rel_sigma: float = 0.15  # measured and output pixels: relative inverse-depth error below this
    odometry_rel_sigma: float = 0.3  # measured pixels with odometry (exact poses: the match error is all there is)
    min_coverage: float = 0.05  # fewer such pixels (or, failing that, fused ones) than this share: no depth
    dis_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    process_noise: float = 0.02  # relative σ_ρ a fused pixel gains per frame it is carried
    unconfirmed_noise: float = 0.1  # relative σ_ρ a fused pixel gains from a measurement that has no value there
    max_sigmas: float = 3.0  # a measurement farther from the fused value than this many joint σ forgets the pixel
    forget_rel_sigma: float = 0.3  # fused pixels less certain than this are forgotten
    min_confirmations: int = 2  # semi-dense output: pixels fused from this many measurements (if they cover enough)
    min_scale_pixels: int = 200  # overlap of map and relative measurement needed to bring it to the map's unit
    pnp_px: float = 2.0  # reprojection threshold of the map's pose without odometry
    max_hold: int = 12  # frames in a row the fused map is carried without a measurement (or, metric, without
    # odometry); 0: never
    odometry_noise_m: float = 0.003  # error of the odometry's relative translation (metres; see step 5)
    calibrate_focal: bool = True  # with odometry: fit the focal length to the tracks (:mod:`.focal`)
    plane_prior: float = 0.003  # weight of the dense fill's plane prior (:func:`.densify.densify`; step 7); 0: none
    plane_max_turn: float = 2.0  # without odometry: the prior only while the rotation's flow < this × the parallax

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """``(w, h)`` of the working images: the input shrunk to ``max_width`` wide (never enlarged)."""
        if width <= self.max_width:
            return width, height
        return self.max_width, max(8, round(height * self.max_width / width))


@dataclass
class MotionDepth:
    """Depth of one frame from motion, at the working resolution ``[h, w]`` (float32)."""

    inv_depth: np.ndarray  # semi-dense inverse depth (1/m when ``metric``), NaN where none
    confidence: np.ndarray  # in [0, 1], 0 where none
    dense: np.ndarray  # inverse depth filled everywhere (:func:`nut_ros.geometry.densify.densify`)
    metric: bool
    reference_stamp_ns: int  # of the reference frame of the last measurement fused
    parallax_px: float  # median parallax of that measurement's tracks after removing the rotation
    held_frames: int = 0  # > 0: this many frames since the last measurement (the fused map carried alone)
    fused_count: np.ndarray | None = None  # uint16 per pixel: measurements fused into it (0 where none)
    focal_scale: float = 1.0  # the focal length used, relative to the given intrinsics' (:mod:`.focal`)

    @property
    def coverage(self) -> float:
        """Share of pixels with a semi-dense value."""
        return float((self.confidence > 0).mean())


@dataclass
class _Kept:
    grey: np.ndarray
    half: np.ndarray  # grey halved (``cv2.pyrDown``): the still-camera test's image
    stamp_ns: int
    pose: np.ndarray | None


class _Tracks:
    """The corners ``p0 [N, 1, 2]`` of the current frame ``grey`` (strongest first, at most ``max_points``; detected
    when first asked for: the still-camera test needs none) tracked into kept frames (:func:`.two_view.track`):
    ``tracks(ref, n)`` gives ``(p_cur [M, 2], p_ref [M, 2])`` of the first ``n`` (None: all), each point tracked into
    each frame at most once (points are tracked on their own: a subset of tracks made already is theirs)."""

    def __init__(self, grey: np.ndarray, max_points: int):
        self.grey, self._max_points, self._p0 = grey, max_points, None
        self._done: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def p0(self) -> np.ndarray:
        if self._p0 is None:
            self._p0 = _corners(self.grey, self._max_points)
        return self._p0

    def made(self, ref: _Kept) -> bool:
        """Whether the tracks of every corner into ``ref`` are made already."""
        return id(ref) in self._done and len(self._done[id(ref)][1]) == len(self.p0)

    def __call__(self, ref: _Kept, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.p0) if n is None else min(n, len(self.p0))
        if id(ref) not in self._done or len(self._done[id(ref)][1]) < n:
            self._done[id(ref)] = track(self.grey, ref.grey, self.p0[:n])
        p1, ok = (a[:n] for a in self._done[id(ref)])
        return self.p0[:n][ok, 0].astype(np.float64), p1[ok, 0].astype(np.float64)


def _corners(grey: np.ndarray, n: int) -> np.ndarray:
    """The strongest ``n`` corners of ``grey`` (:func:`.two_view.corners`), a 40th of its longer side apart."""
    return corners(grey, n, max(grey.shape) / 40)


@dataclass
class _Fused:
    """The fused map of the newest kept frame and where it came from."""

    map: InverseDepthMap
    dense: np.ndarray | None  # its dense fill (the next frame's pose reads it where the map has none), None: no output
    metric: bool
    reference_stamp_ns: int
    parallax_px: float
    held_frames: int
    turn_px: float  # median track motion the rotation alone explains, of the last measurement
    unposed_frames: int = 0  # a metric map: frames in a row it went on without odometry (nor a metric measurement)

    def rescale(self, s: float) -> None:
        """Every inverse depth times ``s`` (the focal length used changed by ``1/s``)."""
        self.map = self.map.scaled(s)
        if self.dense is not None:
            self.dense = self.dense * np.float32(s)


@dataclass
class _Measurement:
    map: InverseDepthMap
    metric: bool
    reference_stamp_ns: int
    parallax_px: float
    turn_px: float


class DepthFromMotion:
    """Feed every frame of a stream with :meth:`estimate`; ``last_reason`` says why the last one had no measurement
    of its own ("" when it had one)."""

    def __init__(self, config: MotionDepthConfig = MotionDepthConfig()):
        self.config = config
        self._window: deque[_Kept] = deque(maxlen=config.window)
        self._dis = cv2.DISOpticalFlow_create(config.dis_preset)
        self._fused: _Fused | None = None
        self._focal = FocalCalibration()
        self.last_reason = ""

    def reset(self) -> None:
        self._window.clear()
        self._fused = None
        self._focal.reset()

    def estimate(self, rgb: np.ndarray, stamp_ns: int, intrinsics: Intrinsics,
                 camera_pose: np.ndarray | None = None) -> MotionDepth | None:
        """Depth of ``rgb [H, W, 3]`` uint8 (``intrinsics`` of that size; ``camera_pose`` 4x4 T_world<-camera in
        metres, or None) from the kept frames and the fused map; the frame is kept for the next ones either way."""
        w, h = self.config.working_size(rgb.shape[1], rgb.shape[0])
        grey = cv2.cvtColor(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        K = camera_matrix(intrinsics.scaled(w, h))
        half = cv2.pyrDown(grey)
        pose = None if camera_pose is None else np.asarray(camera_pose, np.float64)
        try:
            return self._estimate(grey, half, K, pose)
        finally:
            self._window.append(_Kept(grey, half, stamp_ns, pose))

    def _estimate(self, grey, half, K, pose) -> MotionDepth | None:
        c = self.config
        if not self._window or self._window[-1].grey.shape != grey.shape:
            self.reset()
            self.last_reason = "no_reference"
            return None
        tracked = _Tracks(grey, c.max_points)
        prev = self._window[-1]
        if c.calibrate_focal and pose is not None and prev.pose is not None:
            before = self._focal.scale
            changed = self._focal.add(K, pose_from_odometry(pose, prev.pose), lambda: tracked(prev))
            if changed and self._fused is not None:
                self._fused.rescale(before / self._focal.scale)
        K = with_focal_scale(K, self._focal.scale)
        prior = self._propagate(K, pose, tracked)
        measured = self._measure(grey, half, K, pose, tracked)
        fused, last = self._fuse(prior, measured), self._fused
        if fused is not None and fused.metric and last is not None:  # (a metric map without odometry: counted)
            fresh = (pose is not None and prev.pose is not None) or (measured is not None and measured.metric)
            fused.unposed_frames = 0 if fresh else last.unposed_frames + 1
        self._fused = fused
        if fused is None:
            return None
        rel_sigma, count = fused.map.rel_sigma(), fused.map.count
        with np.errstate(invalid="ignore"):
            precise = rel_sigma < c.max_rel_sigma
            bound = c.max_rel_sigma if precise.mean() >= c.min_coverage else c.forget_rel_sigma
            full = 2 * c.min_confirmations
            weight = np.where(rel_sigma < bound, (1 - rel_sigma / bound) * np.minimum(count, full) / full, 0)
        if (weight > 0).mean() < c.min_coverage:
            self.last_reason = self.last_reason or "low_coverage"
            return None
        keep = precise & (count >= c.min_confirmations)
        if keep.mean() < c.min_coverage:
            keep = precise
        confidence = np.where(keep, weight, 0).astype(np.float32)
        inv = np.where(keep, fused.map.rho, np.nan).astype(np.float32)
        fused.dense = densify(np.where(weight > 0, fused.map.rho, 0), weight.astype(np.float32), grey,
                              plane_weight=c.plane_prior if fused.metric or fused.turn_px <= c.plane_max_turn
                              * fused.parallax_px else 0.0)
        return MotionDepth(inv, confidence, fused.dense, fused.metric, fused.reference_stamp_ns, fused.parallax_px,
                           fused.held_frames, np.where(keep, fused.map.count, 0).astype(np.uint16),
                           self._focal.scale)

    def _propagate(self, K, pose, tracked) -> InverseDepthMap | None:
        """The fused map of the previous frame carried into this one, or None."""
        c, last, prev = self.config, self._fused, self._window[-1]
        if last is None:
            return None
        odometry = pose is not None and prev.pose is not None
        if odometry and last.metric:
            rel = pose_from_odometry(prev.pose, pose)  # X_cur = R X_prev + t
            R, t = rel.R, rel.t
        elif odometry:  # odometry back under a relative map: a metric map starts from the next metric measurement
            return None
        elif last.metric and last.unposed_frames >= c.max_hold:  # metres without odometry: for max_hold frames only
            return None
        else:  # no odometry for the pair: the map's own unit, metres for a metric map held over a missing pose
            found = self._map_pose(K, *tracked(prev), last)
            if found is None:
                return None
            R, t = found
        return propagate(last.map, R, t, K, c.process_noise).pruned(c.forget_rel_sigma)

    def _map_pose(self, K, p_cur, p_prev, last: _Fused) -> tuple[np.ndarray, np.ndarray] | None:
        """``(R, t)`` with ``X_cur = R X_prev + t`` in the map's unit: PnP of the tracks against the fused inverse
        depth of the previous frame (its dense fill where the map has no value)."""
        if len(p_cur) < self.config.min_tracks:
            return None
        h, w = last.map.rho.shape
        u = np.clip(np.rint(p_prev[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.rint(p_prev[:, 1]).astype(int), 0, h - 1)
        rho = last.map.rho[v, u] if last.dense is None else np.where(last.map.known[v, u], last.map.rho[v, u],
                                                                      last.dense[v, u])
        ok = rho > 0
        if ok.sum() < self.config.min_tracks:
            return None
        p_cur, p_prev = p_cur[ok], p_prev[ok]
        X = np.concatenate([p_prev, np.ones_like(p_prev[:, :1])], 1) @ np.linalg.inv(K).T / rho[ok, None]
        try:
            ok, rvec, tvec, inliers = cv2.solvePnPRansac(X, p_cur, K, None, iterationsCount=100,
                                                         reprojectionError=self.config.pnp_px, confidence=0.999,
                                                         flags=cv2.SOLVEPNP_EPNP)
            if not ok or inliers is None or len(inliers) < self.config.min_tracks // 2:
                return None
            rvec, tvec = cv2.solvePnPRefineLM(X[inliers[:, 0]], p_cur[inliers[:, 0]], K, None, rvec, tvec)
        except cv2.error:  # degenerate points (all on one line): no pose, the map is dropped
            return None
        return cv2.Rodrigues(rvec)[0], tvec[:, 0]

    def _measure(self, grey, half, K, pose, tracked: _Tracks) -> _Measurement | None:
        """Inverse depth of this frame from one reference of the window (its own unit without odometry), or None."""
        c = self.config

        def motion(p_cur, p_ref) -> float:  # median track motion, NaN when too few tracks
            return float(np.median(np.linalg.norm(p_cur - p_ref, axis=1))) if len(p_cur) >= c.min_tracks else np.nan

        newest, oldest = self._window[-1], self._window[0]
        moved = tracked.made(newest) and motion(*tracked(newest)) >= c.min_motion_px  # made already: a free answer
        if not moved:
            # the oldest frame moved most, as a rule: a still camera tracks once more
            # at half size (pixels count STILL_SCALE times), the strongest corners of its own
            p_cur, p_old = track_points(half, oldest.half, _corners(half, c.static_points),
                                        fb_max_px=1.0 / STILL_SCALE, lk=STILL_LK)
            still = STILL_SCALE * motion(p_cur, p_old)
            if c.still_margin * c.min_motion_px <= still < c.min_motion_px / c.still_margin:
                still = motion(*tracked(oldest))  # near the threshold the tracks of every corner decide
            if still < c.min_motion_px:
                self.last_reason = "static"
                return None
        attempts, self.last_reason, best = 0, "static", None
        for ref in reversed(self._window):
            if attempts == c.max_attempts:
                break
            # with odometry the tracks only measure the motion and parallax (medians): the strongest corners suffice
            few = pose is not None and ref.pose is not None and ref is not newest and not tracked.made(ref)
            n = min(c.odometry_points, len(tracked.p0)) if few else len(tracked.p0)
            p_cur, p_ref = tracked(ref, n)
            if not len(p_cur) or len(p_cur) < c.min_tracks * n / len(tracked.p0):  # as many lost as of every corner
                self.last_reason = "lost_tracks"
                break  # older frames share even less with this one
            if np.median(np.linalg.norm(p_cur - p_ref, axis=1)) < c.min_motion_px:
                continue
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
                turn = float(np.median(np.linalg.norm(apply_homography(rotation_homography(rel.R, K), p_cur[inliers])
                                                      - p_cur[inliers], axis=1)))
                best = (ref, rel, parallax, turn)
            if parallax >= c.target_parallax_px:
                break
        return None if best is None else self._depth(grey, *best, K)

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

    def _depth(self, grey, ref: _Kept, rel: RelativePose, parallax: float, turn_px: float, K) -> _Measurement | None:
        c = self.config
        h, w = grey.shape
        H = rotation_homography(rel.R, K)
        warped = cv2.warpPerspective(ref.grey, H, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderValue=0)
        flow = self._dis.calc(grey, warped, None)
        gu, gv = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        target = np.stack([gu + flow[..., 0], gv + flow[..., 1]], -1)
        x_ref = apply_homography(H, target)
        tri = triangulate_matches(np.stack([gu, gv], -1), x_ref, rel, K)
        matched = cv2.remap(warped, target[..., 0], target[..., 1], cv2.INTER_LINEAR, borderValue=0)
        inside = (x_ref[..., 0] >= 0) & (x_ref[..., 0] <= w - 1) & (x_ref[..., 1] >= 0) & (x_ref[..., 1] <= h - 1)
        photometric = np.abs(matched.astype(np.float32) - grey.astype(np.float32))
        sigma = c.match_sigma_px / np.maximum(tri.px_per_rho, 1e-12)
        if rel.metric and c.odometry_noise_m > 0:  # the baseline's own error scales ρ: σ_ρ/ρ = σ_t / |t|
            sigma = np.hypot(sigma, np.nan_to_num(tri.inv_depth) * c.odometry_noise_m / np.linalg.norm(rel.t))
        rel_sigma = sigma / np.maximum(tri.inv_depth, 1e-12)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        texture = cv2.blur(np.sqrt(gx * gx + gy * gy) / 4, (3, 3))
        max_rel_sigma = c.odometry_rel_sigma if rel.metric else c.max_rel_sigma
        keep = (np.isfinite(tri.inv_depth) & inside & (texture >= c.min_gradient)
                & (tri.epipolar_px < c.max_epipolar_px) & (photometric < c.max_photometric)
                & (rel_sigma < max_rel_sigma))
        if not keep.any():
            self.last_reason = "low_coverage"
            return None
        lo, hi = np.percentile(tri.inv_depth[keep], [1, 99])
        inv = np.where(keep, np.clip(tri.inv_depth, lo, hi), np.nan)
        self.last_reason = ""
        return _Measurement(InverseDepthMap.measured(inv, sigma), rel.metric, ref.stamp_ns, parallax, turn_px)

    def _fuse(self, prior: InverseDepthMap | None, measured: _Measurement | None) -> _Fused | None:
        """The new fused state from the propagated map and the measurement (either may be None)."""
        c, last = self.config, self._fused
        m = None if measured is None else measured.map
        if m is not None and prior is not None and measured.metric and not last.metric:
            prior = None  # a metric measurement replaces a relative map
        if m is not None and prior is not None and not measured.metric:  # into the map's unit, metric or not
            s = median_scale(prior, m, c.min_scale_pixels)
            if s is not None:
                m = m.scaled(s)
            elif m.known.mean() >= c.min_coverage:
                prior = None  # a measurement that cannot be brought to the map's unit starts a new map
            else:
                m = None  # or, too small to start one, is left out
        if m is None:
            if prior is None or last.held_frames >= c.max_hold:
                return None
            return _Fused(prior, None, last.metric, last.reference_stamp_ns, last.parallax_px,
                          last.held_frames + 1, last.turn_px)
        if prior is None:
            if m.known.mean() < c.min_coverage:
                self.last_reason = "low_coverage"
                return None
            fused = m
        else:
            fused = fuse(prior, m, c.max_sigmas, c.unconfirmed_noise)
        return _Fused(fused.pruned(c.forget_rel_sigma), None, measured.metric if prior is None else last.metric,
                      measured.reference_stamp_ns, measured.parallax_px, 0, measured.turn_px)

"""Two views of a static scene: relative pose from point tracks, and inverse depth of dense correspondences.

Conventions: pixels as in docs/CONVENTIONS.md §4; a :class:`RelativePose` maps points of the current camera's optical
frame into the reference camera's, ``X_ref = R X_cur + t``. Inverse depth ``ρ = 1/Z`` of the current camera: with
``m = R K⁻¹ x`` the matching reference point is ``π(m + ρ t)``, linear in ``ρ`` (``ρ = 0`` is the point at infinity,
where the rotation alone explains the match).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics


#: triangulated points farther than this many baselines count as at infinity in the cheirality test
FAR_BASELINES = 1e4


@dataclass(frozen=True)
class RelativePose:
    """``X_ref = R X_cur + t`` (``t`` in metres when ``metric``, else a unit direction)."""

    R: np.ndarray  # [3, 3]
    t: np.ndarray  # [3]
    metric: bool


def camera_matrix(k: Intrinsics) -> np.ndarray:
    return np.array([[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]])


def pose_from_odometry(T_world_cur: np.ndarray, T_world_ref: np.ndarray) -> RelativePose:
    """The relative pose of two ``T_world<-camera`` poses (4x4, metres)."""
    T = np.linalg.solve(np.asarray(T_world_ref, np.float64), np.asarray(T_world_cur, np.float64))
    return RelativePose(T[:3, :3], T[:3, 3], metric=True)


def corners(grey: np.ndarray, max_points: int, min_distance: float) -> np.ndarray:
    """Shi-Tomasi corners of a grey image, ``[N, 1, 2]`` float32 (N may be 0)."""
    found = cv2.goodFeaturesToTrack(grey, max_points, 0.01, min_distance, blockSize=5)
    return np.zeros((0, 1, 2), np.float32) if found is None else found.astype(np.float32)


#: samples of the homography RANSAC of :func:`is_pure_rotation`: a homography that explains 90 % of the tracks is
#: drawn in 5 samples at 99.5 % confidence, and all 100 miss it with probability 0.34^100 (OpenCV's default of 2000
#: only spends more where no homography explains that many: 3.5 ms per frame on TUM fr1_rpy, 1.3 ms with 100, every
#: decision and homography of its training part the same)
ROTATION_RANSAC_ITERATIONS = 100

#: pyramidal Lucas-Kanade of the tracks (``cv2.calcOpticalFlowPyrLK``)
LK = {"winSize": (15, 15), "maxLevel": 3, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
#: the still-camera test's image is the frame shrunk by this factor (``cv2.pyrDown``: the first level above the image
#: of :data:`LK`'s pyramid); its pixels count this many of the frame's
STILL_SCALE = 2
#: Lucas-Kanade of the still-camera test, which asks only whether the median track moved less than a few pixels: on
#: the halved image with corners of its own, an 11 px window, one level above it (at quarter size it follows some
#: 22 px of the whole image) and 10 iterations; a camera that moved more loses its tracks or shows their motion. It
#: gives the same answer as the whole image with two levels above it on every frame of the bundled cups clip, TUM
#: fr1_rpy (every frame and every 3rd, with and without poses), TartanAir and the generated room of the tests, at
#: about half the cost (docs/BENCHMARKS.md); with the whole image and one level, a camera moving 2 cm per frame on
#: the room seemed still (the tracks that move most are lost first, and the median of the rest is low)
STILL_LK = {"winSize": (11, 11), "maxLevel": 1, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)}


def track_points(cur: np.ndarray, ref: np.ndarray, p0: np.ndarray, fb_max_px: float = 1.0,
                 lk: dict = LK) -> tuple[np.ndarray, np.ndarray]:
    """Points ``p0 [N, 1, 2]`` (:func:`corners` of grey ``cur``) tracked into grey ``ref`` by pyramidal Lucas-Kanade
    (settings ``lk``), kept where tracking back into ``cur`` returns within ``fb_max_px``: ``(p_cur [M, 2],
    p_ref [M, 2])`` float64 pixels."""
    p1, ok = track(cur, ref, p0, fb_max_px, lk)
    return p0[ok, 0].astype(np.float64), p1[ok, 0].astype(np.float64)


def track(cur: np.ndarray, ref: np.ndarray, p0: np.ndarray, fb_max_px: float = 1.0,
          lk: dict = LK) -> tuple[np.ndarray, np.ndarray]:
    """:func:`track_points` per point: ``(p1 [N, 1, 2] float32, ok [N] bool)``. Every point is tracked on its own:
    tracking the first ``n`` of ``p0`` gives the first ``n`` rows."""
    if len(p0) == 0:
        return np.zeros((0, 1, 2), np.float32), np.zeros(0, bool)
    p1, status, _ = cv2.calcOpticalFlowPyrLK(cur, ref, p0, None, **lk)
    ok = status[:, 0] == 1
    if ok.any():  # back only where found: the points are independent, and a lost one costs the most iterations
        back, status, _ = cv2.calcOpticalFlowPyrLK(ref, cur, p1[ok], None, **lk)
        ok[ok] = (status[:, 0] == 1) & (np.linalg.norm((back - p0[ok])[:, 0], axis=1) < fb_max_px)
    return p1, ok


def rotation_homography(R: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``H = K R K⁻¹``: where a current pixel at infinite distance appears in the reference image."""
    return K @ R @ np.linalg.inv(K)


def apply_homography(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pixels ``p [..., 2]`` mapped by ``H``, in the dtype of ``p``."""
    H = H.astype(p.dtype)
    x, y = p[..., 0], p[..., 1]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    return np.stack([(H[0, 0] * x + H[0, 1] * y + H[0, 2]) / w, (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / w], -1)


def rotation_parallax(p_cur: np.ndarray, p_ref: np.ndarray, R: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Per track, pixels between the reference point and where the rotation alone puts it (the translation's part)."""
    return np.linalg.norm(apply_homography(rotation_homography(R, K), p_cur) - p_ref, axis=1)


def sampson_px(p_cur: np.ndarray, p_ref: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
               focal_scales: np.ndarray | None = None) -> np.ndarray:
    """Per track, the Sampson distance (first-order distance to the epipolar geometry, in pixels of focal length
    ``K[0, 0]``) of ``p_cur [N, 2]`` and ``p_ref [N, 2]`` under ``X_ref = R X_cur + t`` (any length of ``t``);
    ``[S, N]`` for each of ``focal_scales [S]`` (``K`` with ``fx``, ``fy`` times the scale) when given."""
    s = np.ones(1) if focal_scales is None else np.asarray(focal_scales, np.float64)
    Kinv = np.linalg.inv(K)

    def normalised(p):  # [S, N, 3]: a focal length s times longer divides the centred coordinates by s
        x = np.concatenate([p, np.ones_like(p[:, :1])], 1) @ Kinv.T
        return np.concatenate([x[None, :, :2] / s[:, None, None], np.ones((len(s), len(p), 1))], 2)

    xc, xr = normalised(p_cur), normalised(p_ref)
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    E = tx @ R / max(np.linalg.norm(t), 1e-12)
    ex, etx = xc @ E.T, xr @ E
    den = np.sqrt(ex[..., 0] ** 2 + ex[..., 1] ** 2 + etx[..., 0] ** 2 + etx[..., 1] ** 2)
    out = np.abs((xr * ex).sum(-1)) / np.maximum(den, 1e-15) * (K[0, 0] * s[:, None])
    return out[0] if focal_scales is None else out


def is_pure_rotation(p_cur: np.ndarray, p_ref: np.ndarray, K: np.ndarray, threshold_px: float,
                     min_share: float = 0.9, max_spread: float = 0.01) -> bool:
    """Whether one homography of the form ``K R K⁻¹`` explains ``min_share`` of the tracks: the camera turned in place
    (or the tracks say too little to tell), so the essential matrix is degenerate and no depth can be had. RANSAC
    stops after ``ROTATION_RANSAC_ITERATIONS`` samples."""
    if len(p_cur) < 8:
        return True
    H, inl = cv2.findHomography(p_cur, p_ref, cv2.RANSAC, threshold_px, maxIters=ROTATION_RANSAC_ITERATIONS)
    if H is None or inl.mean() < min_share:
        return False
    sv = np.linalg.svd(np.linalg.inv(K) @ H @ K, compute_uv=False)
    return bool(sv[2] / sv[0] > 1 - max_spread)


def essential_pose(p_cur: np.ndarray, p_ref: np.ndarray, K: np.ndarray, threshold_px: float,
                   min_inliers: int) -> tuple[RelativePose, np.ndarray] | None:
    """Relative pose (unit translation) from tracks: 5-point essential matrix in USAC (RANSAC with local
    optimisation: on a generated room 2 % instead of 8 % median-aligned AbsRel than plain RANSAC), then the cheirality
    test (``recoverPose``: the one of four decompositions that puts the points in front of both cameras). Returns the
    pose and the inlier mask, or None when fewer than ``min_inliers`` tracks agree."""
    if len(p_cur) < max(min_inliers, 5):
        return None
    E, inl = cv2.findEssentialMat(p_cur, p_ref, K, cv2.USAC_ACCURATE, 0.999, threshold_px)
    if E is None or E.shape != (3, 3):  # several solutions are stacked when the 5-point problem is ambiguous
        return None
    # points in front of both cameras at any distance pick the decomposition (OpenCV's default also drops those
    # beyond 50 baselines, which rejects every short-baseline pair; the parallax test judges those instead)
    n, R, t, inl, _ = cv2.recoverPose(E, p_cur, p_ref, K, distanceThresh=FAR_BASELINES, mask=inl.copy())
    if n < min_inliers:
        return None
    return RelativePose(R, t[:, 0] / max(np.linalg.norm(t), 1e-12), metric=False), inl[:, 0] > 0


@dataclass
class Triangulation:
    """Per pixel of the current image (all ``[h, w]`` float32)."""

    inv_depth: np.ndarray  # ρ = 1/Z (1/m when the pose is metric), least squares over both image axes
    epipolar_px: np.ndarray  # distance of the match from the epipolar line (a moving point or a wrong match)
    px_per_rho: np.ndarray  # pixels the match moves per unit of ρ (depth sensitivity; 0 at the epipole)


def triangulate_matches(x_cur: np.ndarray, x_ref: np.ndarray, pose: RelativePose, K: np.ndarray) -> Triangulation:
    """Inverse depth of current pixels ``x_cur [h, w, 2]`` matched to reference pixels ``x_ref [h, w, 2]``, computed
    in float32 (relative error about 1e-6 of ρ where the parallax is a hundredth of the focal length)."""
    Kinv = np.linalg.inv(K)
    f = np.float32(0.5 * (K[0, 0] + K[1, 1]))
    M = (pose.R @ Kinv).astype(np.float32)
    Ki = Kinv.astype(np.float32)
    t0, t1, t2 = pose.t.astype(np.float32)
    u, v = x_cur[..., 0].astype(np.float32), x_cur[..., 1].astype(np.float32)
    m0, m1, m2 = (M[r, 0] * u + M[r, 1] * v + M[r, 2] for r in range(3))  # m = R K⁻¹ x
    ur, vr = x_ref[..., 0].astype(np.float32), x_ref[..., 1].astype(np.float32)
    a = Ki[0, 0] * ur + Ki[0, 1] * vr + Ki[0, 2]  # the normalised reference point (a, b, 1)
    b = Ki[1, 0] * ur + Ki[1, 1] * vr + Ki[1, 2]
    # m + ρ t ∥ (a, b, 1):  (m_x - a m_z) = ρ (a t_z - t_x),  (m_y - b m_z) = ρ (b t_z - t_y)
    B0, B1 = a * t2 - t0, b * t2 - t1
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = ((m0 - a * m2) * B0 + (m1 - b * m2) * B1) / np.maximum(B0 * B0 + B1 * B1, np.float32(1e-18))
        # epipolar line through π(m) (ρ = 0) along the direction the match moves with ρ
        ix, iy = m0 / m2, m1 / m2
    d0, d1 = t0 - ix * t2, t1 - iy * t2
    dn = np.hypot(d0, d1)
    epi = np.abs(d0 * (b - iy) - d1 * (a - ix)) * (f / np.maximum(dn, np.float32(1e-12)))
    zr = m2 + rho * t2  # depth in the reference camera (per unit current depth): > 0 in front
    sens = f * dn * np.abs(m2) / np.maximum(zr * zr, np.float32(1e-18))  # |dπ(m + ρt)/dρ| in pixels
    rho = np.where((zr > 0) & (rho > 0) & np.isfinite(rho), rho, np.float32(np.nan))  # in front of both cameras
    return Triangulation(rho, epi, sens)

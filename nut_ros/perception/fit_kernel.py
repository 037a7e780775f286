"""The camera-motion fit (:func:`nut_ros.perception.ego_motion.solve_static_field`) as one Triton kernel on a GPU.

In torch each reweighting round of the fit is a handful of kernels (the weights, a float64 matrix product for the
normal equations, an LU factorisation and two triangular solves, the residuals), on the frame's critical path: on an
H100 about 500 µs for the default 4096 Gaussians and 6 rounds, against 73 µs for this kernel
(``test/bench/fit_kernel_bench.py``, docs/BENCHMARKS.md). Here one program does every round: per round it streams
the sample through in blocks, computing each Gaussian's weight from the last round's residual and adding its three
equations to the 19 distinct sums of the normal equations, then solves the 6x6 system in closed form. Its (c, c)
block is diagonal, so c is eliminated first and the Schur complement's 3x3 system in ω is solved by its adjugate;
the solve fails where a pivot of the elimination is not positive or not finite (the matrix is symmetric positive
definite with the fit's ridge wherever the sample carries weight; torch's LU fails only on an exactly singular
matrix, and callers treat both flags the same: nonzero is a failure). The same ridge, weights and result layout as
the torch fit: the two agree to rounding, within 1e-10 (``test/test_perception_fit_kernel.py``; the kernel's scalar
arguments, z weight, ridge and Tukey constant, arrive in float32).

Used by ``solve_static_field`` for CUDA tensors when Triton is installed (torch's CUDA wheels bring it); a CUDA graph
holds its launch like any other kernel, and ``torch.compile`` leaves it out of what it compiles. Where the kernel
cannot be built (:data:`error` says why; the node warns once) the torch fit runs.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # (CPU-only installs: the torch fit runs)
    triton = None

BLOCK = 512  # Gaussians per step of a pass (each of the normal matrix's 19 sums is kept per lane); with WARPS, the
WARPS = 16  # fastest of fit_kernel_bench.py's choices for 4096 Gaussians on an H100 (one Gaussian a thread)
error: str | None = None  # why the kernel could not run (then it is not tried again)


def available() -> bool:
    """Whether the kernel may run (Triton importable, no earlier failure)."""
    return triton is not None and error is None


if triton is not None:
    @triton.jit
    def _sample(points, velocities, weights, threshold, start, n, BLOCK: tl.constexpr):
        """One block of the sample in float64, as the torch fit reads it: Gaussians without weight have zero point,
        velocity and prior, threshold 1. Returns ``x, y, z, vx, vy, vz``, the prior ``weight / threshold²``, the
        threshold and whether each has weight."""
        i = start + tl.arange(0, BLOCK)
        inside = i < n
        w_in = tl.load(weights + i, inside, 0.0).to(tl.float64)
        keep = w_in > 0
        x = tl.where(keep, tl.load(points + 3 * i, inside, 0.0).to(tl.float64), 0.0)
        y = tl.where(keep, tl.load(points + 3 * i + 1, inside, 0.0).to(tl.float64), 0.0)
        z = tl.where(keep, tl.load(points + 3 * i + 2, inside, 0.0).to(tl.float64), 0.0)
        vx = tl.where(keep, tl.load(velocities + 3 * i, inside, 0.0).to(tl.float64), 0.0)
        vy = tl.where(keep, tl.load(velocities + 3 * i + 1, inside, 0.0).to(tl.float64), 0.0)
        vz = tl.where(keep, tl.load(velocities + 3 * i + 2, inside, 0.0).to(tl.float64), 0.0)
        thresh = tl.where(keep, tl.load(threshold + i, inside, 1.0).to(tl.float64), 1.0)
        prior = tl.where(keep, w_in / (thresh * thresh), 0.0)
        return x, y, z, vx, vy, vz, prior, thresh, keep

    @triton.jit
    def _residual(x, y, z, vx, vy, vz, thresh, c0, c1, c2, w0, w1, w2, z_weight):
        """|(v - (c + ω × X)) · axis weights| / threshold per Gaussian."""
        rx = vx - (c0 + w1 * z - w2 * y)
        ry = vy - (c1 + w2 * x - w0 * z)
        rz = (vz - (c2 + w0 * y - w1 * x)) * z_weight
        return tl.sqrt(rx * rx + ry * ry + rz * rz) / thresh

    @triton.jit
    def _normal_sums(points, velocities, weights, threshold, n, c0, c1, c2, w0, w1, w2, z_weight, tukey_c,
                     k: tl.constexpr, huber_rounds: tl.constexpr, BLOCK: tl.constexpr):
        """The 19 distinct sums of round ``k``'s normal equations: each Gaussian's three equations ``c + ω × X = v``
        (the z one scaled by ``z_weight``) weighted by the prior, reweighted after round 0 by the last round's
        residuals (Huber's weights first, then Tukey's). The design's rows are (1, 0, 0, 0, z, -y),
        (0, 1, 0, -z, 0, x), (0, 0, 1, y, -x, 0); each sum is kept per lane over the blocks and summed once."""
        a = tl.zeros((BLOCK,), tl.float64)
        a2 = tl.zeros((BLOCK,), tl.float64)
        bx = tl.zeros((BLOCK,), tl.float64)
        by = tl.zeros((BLOCK,), tl.float64)
        bz = tl.zeros((BLOCK,), tl.float64)
        cx = tl.zeros((BLOCK,), tl.float64)
        cy = tl.zeros((BLOCK,), tl.float64)
        l33 = tl.zeros((BLOCK,), tl.float64)
        l34 = tl.zeros((BLOCK,), tl.float64)
        l35 = tl.zeros((BLOCK,), tl.float64)
        l44 = tl.zeros((BLOCK,), tl.float64)
        l45 = tl.zeros((BLOCK,), tl.float64)
        l55 = tl.zeros((BLOCK,), tl.float64)
        r0 = tl.zeros((BLOCK,), tl.float64)
        r1 = tl.zeros((BLOCK,), tl.float64)
        r2 = tl.zeros((BLOCK,), tl.float64)
        r3 = tl.zeros((BLOCK,), tl.float64)
        r4 = tl.zeros((BLOCK,), tl.float64)
        r5 = tl.zeros((BLOCK,), tl.float64)
        for start in range(0, n, BLOCK):
            x, y, z, vx, vy, vz, w, thresh, keep = _sample(points, velocities, weights, threshold, start, n, BLOCK)
            if k > 0:
                r = _residual(x, y, z, vx, vy, vz, thresh, c0, c1, c2, w0, w1, w2, z_weight)
                if k - 1 < huber_rounds:
                    w = w / tl.maximum(r, 1.0)
                else:
                    t = tl.maximum(1.0 - (r / tukey_c) * (r / tukey_c), 0.0)
                    w = w * t * t
            wz = w * z_weight * z_weight  # the z equation's weight
            a += w
            a2 += wz
            bx += w * x
            by += w * y
            bz += w * z
            cx += wz * x
            cy += wz * y
            l33 += w * z * z + wz * y * y
            l34 -= wz * x * y
            l35 -= w * x * z
            l44 += w * z * z + wz * x * x
            l45 -= w * y * z
            l55 += w * (x * x + y * y)
            r0 += w * vx
            r1 += w * vy
            r2 += wz * vz
            r3 += wz * y * vz - w * z * vy
            r4 += w * z * vx - wz * x * vz
            r5 += w * (x * vy - y * vx)
        return (tl.sum(a, axis=0), tl.sum(a2, axis=0), tl.sum(bx, axis=0), tl.sum(by, axis=0), tl.sum(bz, axis=0),
                tl.sum(cx, axis=0), tl.sum(cy, axis=0), tl.sum(l33, axis=0), tl.sum(l34, axis=0),
                tl.sum(l35, axis=0), tl.sum(l44, axis=0), tl.sum(l45, axis=0), tl.sum(l55, axis=0),
                tl.sum(r0, axis=0), tl.sum(r1, axis=0), tl.sum(r2, axis=0), tl.sum(r3, axis=0), tl.sum(r4, axis=0),
                tl.sum(r5, axis=0))

    @triton.jit
    def _solve(a, a2, bx, by, bz, cx, cy, l33, l34, l35, l44, l45, l55, r0, r1, r2, r3, r4, r5, ridge):
        """``(c, ω)`` of the normal equations ``[[D, B], [Bᵀ, L]] (c, ω) = r`` with the ridge (times the trace) on
        the diagonal, and whether every pivot of their elimination is positive. ``D = diag(a, a, a2)``,
        ``B = [[0, bz, -by], [-bz, 0, bx], [cy, -cx, 0]]``; ω solves the Schur complement ``S = L - Bᵀ D⁻¹ B``
        against ``r_ω - Bᵀ D⁻¹ r_c`` by its adjugate, then ``c = D⁻¹ (r_c - B ω)``."""
        e = ridge * (a + a + a2 + l33 + l44 + l55)
        d0 = 1.0 / (a + e)
        d2 = 1.0 / (a2 + e)
        s00 = l33 + e - bz * bz * d0 - cy * cy * d2
        s01 = l34 + cx * cy * d2
        s02 = l35 + bx * bz * d0
        s11 = l44 + e - bz * bz * d0 - cx * cx * d2
        s12 = l45 + by * bz * d0
        s22 = l55 + e - (by * by + bx * bx) * d0
        q0 = r3 + bz * r1 * d0 - cy * r2 * d2
        q1 = r4 - bz * r0 * d0 + cx * r2 * d2
        q2 = r5 + (by * r0 - bx * r1) * d0
        adj00 = s11 * s22 - s12 * s12
        adj01 = s02 * s12 - s01 * s22
        adj02 = s01 * s12 - s02 * s11
        adj11 = s00 * s22 - s02 * s02
        adj12 = s01 * s02 - s00 * s12
        adj22 = s00 * s11 - s01 * s01
        det = s00 * adj00 + s01 * adj01 + s02 * adj02
        w0 = (adj00 * q0 + adj01 * q1 + adj02 * q2) / det
        w1 = (adj01 * q0 + adj11 * q1 + adj12 * q2) / det
        w2 = (adj02 * q0 + adj12 * q1 + adj22 * q2) / det
        c0 = (r0 - bz * w1 + by * w2) * d0
        c1 = (r1 + bz * w0 - bx * w2) * d0
        c2 = (r2 - cy * w0 + cx * w1) * d2
        ok = (a + e > 0) & (a2 + e > 0) & (s00 > 0) & (adj22 > 0) & (det > 0)  # the pivots' signs
        return c0, c1, c2, w0, w1, w2, ok

    @triton.jit
    def _fit_kernel(points, velocities, weights, threshold, out, n, z_weight, ridge, tukey_c,
                    iterations: tl.constexpr, huber_rounds: tl.constexpr, BLOCK: tl.constexpr):
        c0, c1, c2, w0, w1, w2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0  # round 0 weighs by the prior only
        failed = 0.0
        for k in tl.static_range(iterations + 1):
            a, a2, bx, by, bz, cx, cy, l33, l34, l35, l44, l45, l55, r0, r1, r2, r3, r4, r5 = _normal_sums(
                points, velocities, weights, threshold, n, c0, c1, c2, w0, w1, w2, z_weight, tukey_c, k, huber_rounds,
                BLOCK)
            c0, c1, c2, w0, w1, w2, ok = _solve(a, a2, bx, by, bz, cx, cy, l33, l34, l35, l44, l45, l55, r0, r1, r2,
                                                r3, r4, r5, ridge)
            failed = tl.where(ok, failed, 1.0)
        # the last solve's residuals: the inlier share of the prior weight; and the Gaussians with weight
        inlier = tl.zeros((BLOCK,), tl.float64)
        prior_sum = tl.zeros((BLOCK,), tl.float64)
        kept = tl.zeros((BLOCK,), tl.float64)
        for start in range(0, n, BLOCK):
            x, y, z, vx, vy, vz, prior, thresh, keep = _sample(points, velocities, weights, threshold, start, n,
                                                               BLOCK)
            r = _residual(x, y, z, vx, vy, vz, thresh, c0, c1, c2, w0, w1, w2, z_weight)
            inlier += tl.where(r < 1.0, prior, 0.0)
            prior_sum += prior
            kept += tl.where(keep, 1.0, 0.0)
        tl.store(out + 0, c0)
        tl.store(out + 1, c1)
        tl.store(out + 2, c2)
        tl.store(out + 3, w0)
        tl.store(out + 4, w1)
        tl.store(out + 5, w2)
        tl.store(out + 6, tl.sum(inlier, axis=0) / tl.sum(prior_sum, axis=0))
        tl.store(out + 7, tl.sum(kept, axis=0))
        tl.store(out + 8, failed)


@torch.compiler.disable
def solve(points: torch.Tensor, velocities: torch.Tensor, weights: torch.Tensor, threshold: torch.Tensor,
          iterations: int, z_weight: float, ridge: float, huber_rounds: int, tukey_c: float) -> torch.Tensor | None:
    """The fit's float64 result ``[9]`` (``(c, ω, inlier share, Gaussians with weight, failed)``) of ``points``,
    ``velocities`` ``[n, 3]``, ``weights``, ``threshold`` ``[n]`` on one device, one kernel launch; None when the
    kernel cannot be built or launched (:data:`error`)."""
    global error
    out = torch.empty(9, dtype=torch.float64, device=points.device)
    try:
        _fit_kernel[(1,)](points.contiguous(), velocities.contiguous(), weights.contiguous(), threshold.contiguous(),
                          out, points.shape[0], float(z_weight), float(ridge), float(tukey_c), iterations=iterations,
                          huber_rounds=huber_rounds, BLOCK=BLOCK, num_warps=WARPS)
    except Exception as err:  # (Triton without a working compiler or driver for this GPU)
        error = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
        return None
    return out

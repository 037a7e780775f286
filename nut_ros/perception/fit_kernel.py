"""The camera-motion fit (:func:`nut_ros.perception.ego_motion.solve_static_field`) as one Triton kernel on a GPU.

In torch each reweighting round of the fit is a handful of kernels (the weights, a float64 matrix product for the
normal equations, an LU factorisation and two triangular solves, the residuals): on an H100 about 25 µs a round, on
the frame's critical path. Here one program does every round: per round it streams the sample through in blocks,
computing each Gaussian's weight from the last round's residual and adding its three equations to the sums of the
augmented normal matrix ``[lhs | rhs]`` (8x8, padded), then solves the 6x6 system by Gauss-Jordan elimination without
pivoting (the matrix is symmetric positive definite with the fit's ridge, so no pivot is needed). The same ridge,
weights and result layout as the torch fit: the two agree to rounding (``test/test_perception_fit_kernel.py``).

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

BLOCK = 128  # Gaussians per step of a pass (each of the normal matrix's 19 sums is kept per lane)
N = 8  # the augmented system's side: 6 unknowns, the right-hand side, one column of padding
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
    def _entry(vector, cols, j: tl.constexpr):
        return tl.sum(tl.where(cols == j, vector, 0.0), axis=0)

    @triton.jit
    def _residual(x, y, z, vx, vy, vz, thresh, params, cols, z_weight):
        """|(v - (c + ω × X)) · axis weights| / threshold per Gaussian, ``params`` = (c, ω, ...)."""
        c0, c1, c2 = _entry(params, cols, 0), _entry(params, cols, 1), _entry(params, cols, 2)
        w0, w1, w2 = _entry(params, cols, 3), _entry(params, cols, 4), _entry(params, cols, 5)
        rx = vx - (c0 + w1 * z - w2 * y)
        ry = vy - (c1 + w2 * x - w0 * z)
        rz = (vz - (c2 + w0 * y - w1 * x)) * z_weight
        return tl.sqrt(rx * rx + ry * ry + rz * rz) / thresh

    @triton.jit
    def _place(normal, rows, cols, i: tl.constexpr, j: tl.constexpr, value):
        """``normal`` with ``value`` at (i, j) and (j, i)."""
        at = ((rows[:, None] == i) & (cols[None, :] == j)) | ((rows[:, None] == j) & (cols[None, :] == i))
        return tl.where(at, value, normal)

    @triton.jit
    def _normal_matrix(points, velocities, weights, threshold, n, params, cols, rows, z_weight, tukey_c,
                       k: tl.constexpr, huber_rounds: tl.constexpr, BLOCK: tl.constexpr, N: tl.constexpr):
        """The augmented normal matrix ``[lhs | rhs]`` (``N x N``, padded) of round ``k``: each Gaussian's three
        equations ``c + ω × X = v`` (the z one scaled by ``z_weight``) weighted by the prior, reweighted after round
        0 by the last round's residuals (Huber's weights first, then Tukey's). Its entries written out: the
        design's rows are (1, 0, 0, 0, z, -y), (0, 1, 0, -z, 0, x), (0, 0, 1, y, -x, 0), so only 19 sums are
        distinct; each is kept per lane over the blocks and summed once."""
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
                r = _residual(x, y, z, vx, vy, vz, thresh, params, cols, z_weight)
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
        normal = tl.zeros((N, N), tl.float64)
        normal = _place(normal, rows, cols, 0, 0, tl.sum(a, axis=0))
        normal = _place(normal, rows, cols, 1, 1, tl.sum(a, axis=0))
        normal = _place(normal, rows, cols, 2, 2, tl.sum(a2, axis=0))
        normal = _place(normal, rows, cols, 0, 4, tl.sum(bz, axis=0))
        normal = _place(normal, rows, cols, 0, 5, -tl.sum(by, axis=0))
        normal = _place(normal, rows, cols, 1, 3, -tl.sum(bz, axis=0))
        normal = _place(normal, rows, cols, 1, 5, tl.sum(bx, axis=0))
        normal = _place(normal, rows, cols, 2, 3, tl.sum(cy, axis=0))
        normal = _place(normal, rows, cols, 2, 4, -tl.sum(cx, axis=0))
        normal = _place(normal, rows, cols, 3, 3, tl.sum(l33, axis=0))
        normal = _place(normal, rows, cols, 3, 4, tl.sum(l34, axis=0))
        normal = _place(normal, rows, cols, 3, 5, tl.sum(l35, axis=0))
        normal = _place(normal, rows, cols, 4, 4, tl.sum(l44, axis=0))
        normal = _place(normal, rows, cols, 4, 5, tl.sum(l45, axis=0))
        normal = _place(normal, rows, cols, 5, 5, tl.sum(l55, axis=0))
        normal = _place(normal, rows, cols, 0, 6, tl.sum(r0, axis=0))
        normal = _place(normal, rows, cols, 1, 6, tl.sum(r1, axis=0))
        normal = _place(normal, rows, cols, 2, 6, tl.sum(r2, axis=0))
        normal = _place(normal, rows, cols, 3, 6, tl.sum(r3, axis=0))
        normal = _place(normal, rows, cols, 4, 6, tl.sum(r4, axis=0))
        return _place(normal, rows, cols, 5, 6, tl.sum(r5, axis=0))

    @triton.jit
    def _fit_kernel(points, velocities, weights, threshold, out, n, z_weight, ridge, tukey_c,
                    iterations: tl.constexpr, huber_rounds: tl.constexpr, BLOCK: tl.constexpr, N: tl.constexpr):
        cols = tl.arange(0, N)
        rows = tl.arange(0, N)
        params = tl.zeros((N,), tl.float64)  # (c, ω, 0, 0); round 0 weighs by the prior only
        failed = tl.zeros((N,), tl.float64)
        for k in tl.static_range(iterations + 1):
            normal = _normal_matrix(points, velocities, weights, threshold, n, params, cols, rows, z_weight, tukey_c,
                                    k, huber_rounds, BLOCK, N)
            # the torch fit's ridge on the 6x6 block, then Gauss-Jordan on the 6 unknowns: column 6 ends as the
            # solution
            diag = (rows[:, None] == cols[None, :]) & (rows[:, None] < 6)
            trace = tl.sum(tl.sum(tl.where(diag, normal, 0.0), axis=1), axis=0)
            normal += tl.where(diag, ridge * trace, 0.0)
            for p in tl.static_range(6):
                pivot_row = tl.sum(tl.where(rows[:, None] == p, normal, 0.0), axis=0)
                pivot = _entry(pivot_row, cols, p)
                failed = tl.where(pivot > 0, failed, 1.0)
                pivot_row = pivot_row / pivot
                column = tl.sum(tl.where(cols[None, :] == p, normal, 0.0), axis=1)
                normal = tl.where(rows[:, None] == p, pivot_row[None, :], normal - column[:, None] * pivot_row[None, :])
            params = tl.where(rows < 6, tl.sum(tl.where(cols[None, :] == 6, normal, 0.0), axis=1), 0.0)
        # the last solve's residuals: the inlier share of the prior weight; and the Gaussians with weight
        inlier = tl.zeros((BLOCK,), tl.float64)
        prior_sum = tl.zeros((BLOCK,), tl.float64)
        kept = tl.zeros((BLOCK,), tl.float64)
        for start in range(0, n, BLOCK):
            x, y, z, vx, vy, vz, prior, thresh, keep = _sample(points, velocities, weights, threshold, start, n,
                                                               BLOCK)
            r = _residual(x, y, z, vx, vy, vz, thresh, params, cols, z_weight)
            inlier += tl.where(r < 1.0, prior, 0.0)
            prior_sum += prior
            kept += tl.where(keep, 1.0, 0.0)
        result = tl.where(cols == 6, tl.sum(inlier, axis=0) / tl.sum(prior_sum, axis=0), params)
        result = tl.where(cols == 7, tl.sum(kept, axis=0), result)
        tl.store(out + cols, result)
        tl.store(out + 8 + cols, failed, cols < 1)


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
                          huber_rounds=huber_rounds, BLOCK=BLOCK, N=N)
    except Exception as err:  # (Triton without a working compiler or driver for this GPU)
        error = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
        return None
    return out

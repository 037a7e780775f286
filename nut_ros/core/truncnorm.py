"""Truncated normal on [-0.999, 0.999] for probabilistic offsets: mean in eval, reparameterised sample in training.

The distribution has location ``μ = 0.999·tanh(raw_mean)`` and scale ``σ = exp(log_scale)``. A sample uses the
inverse CDF, so it is differentiable with respect to μ and log σ. Degenerate cases are handled without the
reference's ``-0.999`` quirk: a (nearly) point mass (``log σ ≤ -5``) returns μ, and a huge σ whose in-range mass
underflows becomes a uniform draw on the support, which is the limit of the truncated normal.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

BOUND = 0.999
LOG_SCALE_MIN = -5.0
MIN_MASS = 1e-3
U_CLAMP = 1e-3


def truncnorm_mean(raw_mean: Tensor) -> Tensor:
    """Location of the distribution, ``0.999·tanh(raw)``; the value used in eval."""
    return BOUND * torch.tanh(raw_mean)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def truncnorm_sample(raw_mean: Tensor, log_scale: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised sample on [-0.999, 0.999] (float32 maths)."""
    mu = truncnorm_mean(raw_mean.float())
    log_scale = log_scale.float()
    sigma = torch.exp(log_scale)
    cdf_a = _normal_cdf((-BOUND - mu) / sigma)
    cdf_b = _normal_cdf((BOUND - mu) / sigma)
    mass = cdf_b - cdf_a
    u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype).clamp(U_CLAMP, 1.0 - U_CLAMP)
    p = (cdf_a + u * mass).clamp(1e-7, 1.0 - 1e-7)
    sample = mu + sigma * math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)
    uniform = -BOUND + 2.0 * BOUND * u
    sample = torch.where(mass > MIN_MASS, sample, uniform)
    sample = torch.where(log_scale > LOG_SCALE_MIN, sample, mu)
    return sample.clamp(-BOUND, BOUND).type_as(raw_mean)

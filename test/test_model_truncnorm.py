"""Truncated-normal sampler on [-0.999, 0.999]: moments, degenerate cases, gradients."""
import math

import torch

from nut_ros.core.truncnorm import BOUND, truncnorm_mean, truncnorm_sample

N = 200_000


def _analytic_mean(mu, sigma, a=-BOUND, b=BOUND):
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))
    al, be = (a - mu) / sigma, (b - mu) / sigma
    return mu + sigma * (pdf(al) - pdf(be)) / (cdf(be) - cdf(al))


def _sample(raw, log_scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    return truncnorm_sample(torch.full((N,), raw), torch.full((N,), log_scale), generator=g)


def test_moments_match_the_truncated_normal():
    for raw, log_scale in [(0.0, 0.0), (0.8, -1.0), (-1.5, -0.5), (2.5, 0.5)]:
        s = _sample(raw, log_scale)
        mu = float(truncnorm_mean(torch.tensor(raw)))
        assert s.abs().max() <= BOUND
        assert abs(s.mean().item() - _analytic_mean(mu, math.exp(log_scale))) < 5e-3, (raw, log_scale)


def test_degenerate_scales():
    tiny = _sample(0.3, -6.0)
    assert torch.allclose(tiny, truncnorm_mean(torch.tensor(0.3)).expand(N))
    huge = _sample(0.3, 12.0)  # in-range mass underflows: uniform on the support, not the -0.999 quirk
    assert abs(huge.mean().item()) < 1e-2
    assert abs(huge.var().item() - (2 * BOUND) ** 2 / 12) < 1e-2
    assert torch.isfinite(_sample(8.0, -4.9)).all()


def test_gradients_flow_to_mean_and_scale():
    raw = torch.zeros(1000, requires_grad=True)
    log_scale = torch.full((1000,), -1.0, requires_grad=True)
    s = truncnorm_sample(raw, log_scale, generator=torch.Generator().manual_seed(0))
    s.square().sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    assert torch.isfinite(log_scale.grad).all() and log_scale.grad.abs().sum() > 0

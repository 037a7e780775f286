"""Generated dynamic scenes with exact ground truth (FlyingThings-style), rendered in torch on the device.

A scene is a set of textured planar layers seen by a moving pinhole camera: a large background plane, static
mid-ground cut-outs and independently moving objects (rigid 3-D motion, some also deforming non-rigidly), with
per-layer and global lighting changes. Every pixel is ray-cast against every layer and z-buffered, so depth,
moving-object masks and point trajectories are exact. Objects start partly outside the view and may enter or leave
it; layers occlude each other.

Conventions: camera optical frame (x right, y down, z forward); pixel centres at integer coordinates; a clip has
``frames`` frames at normalised times ``t_j = j / (frames - 1)``, frames 0 and ``frames - 1`` are the key frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

N_WAVES = 2  # sinusoidal components of a deformation field
N_LOBES = 3  # radial Fourier lobes of a cut-out's outline
FIXED_POINT_ITERS = 8  # deformation inversion; the field is a 0.45-contraction, so the error is < 2e-4 of a layer


@dataclass
class SceneConfig:
    """Distribution of the generated scenes (all image-space quantities are fractions of the image width)."""

    height: int
    width: int
    frames: int = 6
    layers: int = 8  # background + up to (layers - 1) cut-outs
    active_prob: float = 0.85  # a cut-out is present
    moving_prob: float = 0.7  # a present cut-out moves independently
    deform_prob: float = 0.4  # a moving cut-out also deforms
    max_shift: float = 0.18  # largest object displacement over the clip
    static_camera_prob: float = 0.3
    camera_shift: float = 0.12  # metres, lateral camera translation over the clip
    fov_deg: tuple[float, float] = (50.0, 75.0)
    lighting_change: float = 0.2  # largest per-layer gain drift over the clip (global drift: 0.75 of it)
    noise_std: float = 0.01  # RGB sensor noise


@dataclass
class Clip:
    """A batch of generated clips with ground truth (float32 tensors on the generator's device)."""

    rgb: Tensor  # [B, V, 3, H, W] in [0, 1]
    depth: Tensor  # [B, V, 1, H, W] metric depth (camera z), > 0
    moving: Tensor  # [B, V, 1, H, W] 1 where an independently moving object is visible
    tracks: Tensor  # [B, 2, V, 3, H, W] key frame k in {0, V-1}: (u, v, 1/z) at every frame of its visible points
    times: Tensor  # [V] normalised frame times in [0, 1]
    focal: Tensor  # [B] fx = fy in pixels; principal point at the image centre

    @property
    def key_indices(self) -> tuple[int, int]:
        return 0, self.rgb.shape[1] - 1


def _rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` for batched angles ``[...]`` -> ``[..., 3, 3]``."""
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return ry @ rx @ rz


def _take(param: Tensor, index: Tensor) -> Tensor:
    """Per-pixel layer parameters: ``param [B, L, *rest]``, ``index [B, H, W]`` -> ``[B, H, W, *rest]``."""
    batch = torch.arange(param.shape[0], device=param.device).view(-1, 1, 1)
    return param[batch, index]


class SceneGenerator:
    """Samples scene parameters and renders clips; deterministic for a given seed and device."""

    def __init__(self, config: SceneConfig, textures: Tensor, seed: int = 0):
        self.cfg = config
        self.textures = textures  # [T, 3, S, S] in [0, 1]; its device is the render device
        self.device = textures.device
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        self._grey = (textures - textures.mean(1, keepdim=True)).abs().mean((1, 2, 3)) < 0.01  # tinted harder

    # -- sampling -------------------------------------------------------------------------------------------------
    def _u(self, *shape: int, lo: float = 0.0, hi: float = 1.0, gen: torch.Generator) -> Tensor:
        return torch.rand(shape, generator=gen, device=self.device) * (hi - lo) + lo

    def _sample_params(self, batch: int, gen: torch.Generator) -> dict[str, Tensor]:
        cfg, B, L = self.cfg, batch, self.cfg.layers
        W, H = cfg.width, cfg.height
        u = lambda *s, lo=0.0, hi=1.0: self._u(*s, lo=lo, hi=hi, gen=gen)  # noqa: E731
        fov = torch.deg2rad(u(B, lo=cfg.fov_deg[0], hi=cfg.fov_deg[1]))
        focal = (W / 2) / torch.tan(fov / 2)
        f = focal[:, None]
        cx, cy = (W - 1) / 2, (H - 1) / 2

        # cut-outs: image position (possibly outside), depth, projected size; layer 0 is the background
        depth = u(B, L, lo=0.6, hi=6.0).sort(dim=1, descending=True).values  # far to near, painter-like variety
        depth[:, 0] = u(B, lo=7.0, hi=14.0)
        u0, v0 = u(B, L, lo=-0.1 * W, hi=1.1 * W), u(B, L, lo=-0.1 * H, hi=1.1 * H)
        u0[:, 0], v0[:, 0] = cx, cy
        half_px = W * u(B, L, lo=0.08, hi=0.3)
        half_px[:, 0] = 0.75 * math.hypot(W, H)  # background texture spans the view
        a = half_px * depth / f
        b = a * torch.exp(u(B, L, lo=-0.5, hi=0.5))
        b[:, 0] = a[:, 0]
        center = depth[..., None] * torch.stack([(u0 - cx) / f, (v0 - cy) / f, torch.ones_like(u0)], -1)

        active = u(B, L) < cfg.active_prob
        moving = (u(B, L) < cfg.moving_prob) & active
        deform = (u(B, L) < cfg.deform_prob) & moving
        active[:, 0], moving[:, 0], deform[:, 0] = True, False, False
        mv = moving.float()

        # independent motion over the clip: image displacement, depth change, curvature, in/out-of-plane rotation
        ang = u(B, L, lo=-math.pi, hi=math.pi)
        shift = cfg.max_shift * W * u(B, L).pow(1.5)
        u1, v1 = u0 + shift * ang.cos(), v0 + shift * ang.sin()
        depth1 = depth * (1 + u(B, L, lo=-0.25, hi=0.25))
        end = depth1[..., None] * torch.stack([(u1 - cx) / f, (v1 - cy) / f, torch.ones_like(u1)], -1)
        vel = (end - center) * mv[..., None]
        acc = (end - center).norm(dim=-1, keepdim=True) * u(B, L, 3, lo=-0.5, hi=0.5) * mv[..., None]
        euler0 = torch.stack([u(B, L, lo=-0.5, hi=0.5), u(B, L, lo=-0.5, hi=0.5), u(B, L, lo=-math.pi, hi=math.pi)], -1)
        euler0[:, 0, :2] = u(B, 2, lo=-0.6, hi=0.6)  # tilted background
        euler_vel = torch.stack([u(B, L, lo=-0.3, hi=0.3), u(B, L, lo=-0.3, hi=0.3), u(B, L, lo=-0.5, hi=0.5)], -1)
        euler_vel = euler_vel * mv[..., None]

        # non-rigid deformation of the material coordinates: D(q, t) = t (Σ c sin(k·q + φ) + p q)
        wave_k = torch.randn((B, L, N_WAVES, 2), generator=gen, device=self.device)
        wave_k = wave_k / wave_k.norm(dim=-1, keepdim=True) * u(B, L, N_WAVES, 1, lo=1.0, hi=2.5)
        wave_c = u(B, L, N_WAVES, 2, lo=-0.06, hi=0.06) * deform[..., None, None]
        wave_phi = u(B, L, N_WAVES, lo=0, hi=2 * math.pi)
        pulse = u(B, L, lo=-0.1, hi=0.1) * deform

        # outline: superellipse exponent and radial lobes
        expo = torch.where(u(B, L) < 0.5, torch.full_like(depth, 2.0), u(B, L, lo=3.0, hi=8.0))
        lobes = u(B, L, N_LOBES, lo=0.0, hi=0.15) * (u(B, L, 1) < 0.5)
        lobe_phase = u(B, L, N_LOBES, lo=0, hi=2 * math.pi)

        # appearance: texture, its placement, colour jitter, shading gradient, lighting drift
        tex = torch.randint(0, self.textures.shape[0], (B, L), generator=gen, device=self.device)
        tex_rot = u(B, L, lo=-math.pi, hi=math.pi)
        tex_scale = u(B, L, lo=0.35, hi=1.2)
        tex_scale[:, 0] = u(B, lo=1.0, hi=2.5)  # the background mirrors its texture for finer detail
        tex_off = u(B, L, 2, lo=-0.5, hi=0.5)
        grey = self._grey[tex]
        tint = torch.where(grey[..., None], u(B, L, 3, lo=0.3, hi=1.5), u(B, L, 3, lo=0.75, hi=1.25))
        saturation = u(B, L, lo=0.6, hi=1.4)
        shade = u(B, L, 2, lo=-0.15, hi=0.15)
        gain = u(B, L, lo=-1.0, hi=1.0) * cfg.lighting_change
        global_gain = u(B, 3, lo=-0.75, hi=0.75) * cfg.lighting_change * (u(B, 1) < 0.5)

        # camera: optional translation and rotation over the clip
        cam_on = (u(B) >= cfg.static_camera_prob).float()[:, None]
        s = cfg.camera_shift
        cam_vel = torch.stack([u(B, lo=-s, hi=s), u(B, lo=-s / 2, hi=s / 2), u(B, lo=-2 * s, hi=2 * s)], -1) * cam_on
        cam_acc = u(B, 3, lo=-s / 2, hi=s / 2) * cam_on
        cam_euler_vel = torch.stack([u(B, lo=-0.07, hi=0.07), u(B, lo=-0.05, hi=0.05), u(B, lo=-0.035, hi=0.035)], -1)
        cam_euler_vel = cam_euler_vel * cam_on
        return dict(
            focal=focal, center=center, vel=vel, acc=acc, euler0=euler0, euler_vel=euler_vel, a=a, b=b,
            active=active, moving=moving, wave_c=wave_c, wave_k=wave_k, wave_phi=wave_phi, pulse=pulse, expo=expo,
            lobes=lobes, lobe_phase=lobe_phase, tex=tex, tex_rot=tex_rot, tex_scale=tex_scale, tex_off=tex_off,
            tint=tint, saturation=saturation, shade=shade, gain=gain, global_gain=global_gain,
            cam_vel=cam_vel, cam_acc=cam_acc, cam_euler_vel=cam_euler_vel,
        )

    # -- geometry -------------------------------------------------------------------------------------------------
    @staticmethod
    def _layer_pose(p: dict[str, Tensor], t: float) -> tuple[Tensor, Tensor]:
        """Layer centres ``[B, L, 3]`` and orientations ``[B, L, 3, 3]`` (columns e1, e2, normal) at time ``t``."""
        center = p["center"] + p["vel"] * t + 0.5 * p["acc"] * t * t
        e = p["euler0"] + p["euler_vel"] * t
        return center, _rotation(e[..., 0], e[..., 1], e[..., 2])

    @staticmethod
    def _camera_pose(p: dict[str, Tensor], t: float) -> tuple[Tensor, Tensor]:
        """Camera centre ``[B, 3]`` and camera-to-world rotation ``[B, 3, 3]`` at time ``t``."""
        e = p["cam_euler_vel"] * t
        return p["cam_vel"] * t + 0.5 * p["cam_acc"] * t * t, _rotation(e[..., 0], e[..., 1], e[..., 2])

    @staticmethod
    def _deformation(q1: Tensor, q2: Tensor, c: Tensor, k: Tensor, phi: Tensor, pulse: Tensor, t: float):
        """``D(q, t)`` for parameters broadcast against ``q1``/``q2`` (wave axis last in ``c``, ``k``, ``phi``)."""
        d1, d2 = pulse * q1 * t, pulse * q2 * t
        for m in range(N_WAVES):
            s = torch.sin(k[..., m, 0] * q1 + k[..., m, 1] * q2 + phi[..., m]) * t
            d1, d2 = d1 + c[..., m, 0] * s, d2 + c[..., m, 1] * s
        return d1, d2

    def _rays(self, p: dict[str, Tensor], t: float) -> tuple[Tensor, Tensor]:
        """World ray directions ``[B, 3, H, W]`` (camera-z component 1) and origins ``[B, 3]`` at time ``t``."""
        H, W = self.cfg.height, self.cfg.width
        v, u = torch.meshgrid(torch.arange(H, device=self.device, dtype=torch.float32),
                              torch.arange(W, device=self.device, dtype=torch.float32), indexing="ij")
        f = p["focal"].view(-1, 1, 1)
        dirs_cam = torch.stack([(u - (W - 1) / 2) / f, (v - (H - 1) / 2) / f, torch.ones_like(u / f)], 1)
        origin, rot = self._camera_pose(p, t)
        return torch.einsum("bij,bjhw->bihw", rot, dirs_cam), origin

    def _hit_layers(self, p: dict[str, Tensor], t: float):
        """Ray-cast every layer: camera depth ``[B, L, H, W]`` (inf where missed) and material coords q1, q2."""
        dirs, origin = self._rays(p, t)
        center, rot = self._layer_pose(p, t)
        e1, e2, n = rot[..., 0], rot[..., 1], rot[..., 2]
        rel = center - origin[:, None]  # [B, L, 3]
        denom = torch.einsum("blc,bchw->blhw", n, dirs)
        s = (rel * n).sum(-1)[..., None, None] / torch.where(denom.abs() < 1e-6, torch.full_like(denom, 1e-6), denom)
        # local coordinates of the hit point X = origin + s·dir relative to the layer centre
        a, b = p["a"][..., None, None], p["b"][..., None, None]
        q1 = (s * torch.einsum("blc,bchw->blhw", e1, dirs) - (rel * e1).sum(-1)[..., None, None]) / a
        q2 = (s * torch.einsum("blc,bchw->blhw", e2, dirs) - (rel * e2).sum(-1)[..., None, None]) / b
        d1, d2 = self._deformation(q1, q2, *(p[k][:, :, None, None] for k in ("wave_c", "wave_k", "wave_phi", "pulse")),
                                   t)
        m1, m2 = q1 - d1, q2 - d2
        # outline test in material coordinates (the background always covers the view)
        expo = p["expo"][..., None, None]
        rho = (m1.abs().pow(expo) + m2.abs().pow(expo) + 1e-12).pow(1 / expo)
        theta = torch.atan2(m2, m1)
        radius = 0.95 * torch.ones_like(rho)
        for j in range(N_LOBES):
            radius = radius + p["lobes"][..., j, None, None] * torch.cos(
                (j + 2) * theta + p["lobe_phase"][..., j, None, None])
        inside = (rho < radius) & p["active"][..., None, None] & (s > 1e-3)
        inside[:, 0] = s[:, 0] > 1e-3
        return torch.where(inside, s, torch.full_like(s, math.inf)), m1, m2

    def _project(self, p: dict[str, Tensor], points: Tensor, t: float) -> Tensor:
        """World points ``[B, 3, H, W]`` -> ``(u, v, 1/z)`` ``[B, 3, H, W]`` in the camera at time ``t``."""
        H, W = self.cfg.height, self.cfg.width
        origin, rot = self._camera_pose(p, t)
        cam = torch.einsum("bji,bjhw->bihw", rot, points - origin[..., None, None])
        inv_z = 1.0 / cam[:, 2].clamp_min(1e-3)
        f = p["focal"].view(-1, 1, 1)
        return torch.stack([f * cam[:, 0] * inv_z + (W - 1) / 2, f * cam[:, 1] * inv_z + (H - 1) / 2, inv_z], 1)

    def _track(self, p: dict[str, Tensor], layer: Tensor, m1: Tensor, m2: Tensor, t: float) -> Tensor:
        """Where material points ``(m1, m2)`` ``[B, H, W]`` of layers ``layer`` are at time ``t``: ``[B, 3, H, W]``."""
        c, k, phi, pulse = (_take(p[n], layer) for n in ("wave_c", "wave_k", "wave_phi", "pulse"))
        q1, q2 = m1, m2
        for _ in range(FIXED_POINT_ITERS):  # solve q - D(q, t) = m
            d1, d2 = self._deformation(q1, q2, c, k, phi, pulse, t)
            q1, q2 = m1 + d1, m2 + d2
        center, rot = self._layer_pose(p, t)
        center, rot = _take(center, layer), _take(rot, layer)  # [B, H, W, 3], [B, H, W, 3, 3]
        a, b = _take(p["a"], layer), _take(p["b"], layer)
        points = center + (a * q1)[..., None] * rot[..., 0] + (b * q2)[..., None] * rot[..., 1]
        return self._project(p, points.permute(0, 3, 1, 2), t)

    # -- appearance -----------------------------------------------------------------------------------------------
    def _shade(self, p: dict[str, Tensor], layer: Tensor, m1: Tensor, m2: Tensor, t: float) -> Tensor:
        """Textured, colour-jittered, lit colour of material points ``[B, H, W]`` -> ``[B, 3, H, W]``."""
        B, L = layer.shape[0], self.cfg.layers
        H, W = self.cfg.height, self.cfg.width
        # sample every layer's texture at the pixel's material coords, then keep the visible layer
        cos, sin, sc = p["tex_rot"].cos(), p["tex_rot"].sin(), p["tex_scale"]
        gm1, gm2 = _take_all(m1, L), _take_all(m2, L)
        gx = (sc[..., None, None] * (cos[..., None, None] * gm1 - sin[..., None, None] * gm2)
              + p["tex_off"][..., 0, None, None])
        gy = (sc[..., None, None] * (sin[..., None, None] * gm1 + cos[..., None, None] * gm2)
              + p["tex_off"][..., 1, None, None])
        grid = torch.stack([gx, gy], -1).flatten(0, 1)  # [B*L, H, W, 2]
        tex = self.textures[p["tex"].flatten()]
        sampled = F.grid_sample(tex, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        sampled = sampled.view(B, L, 3, H, W)
        rgb = torch.gather(sampled, 1, layer[:, None, None].expand(B, 1, 3, H, W)).squeeze(1)
        grey = rgb.mean(1, keepdim=True)
        sat, tint = _take(p["saturation"], layer)[:, None], _take(p["tint"], layer).permute(0, 3, 1, 2)
        shade = _take(p["shade"], layer)
        light = (1 + shade[..., 0] * m1.clamp(-1.5, 1.5) + shade[..., 1] * m2.clamp(-1.5, 1.5)
                 + _take(p["gain"], layer) * t)
        rgb = (grey + sat * (rgb - grey)) * tint * light[:, None]
        return rgb * (1 + p["global_gain"][..., None, None] * t)

    # -- public ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, batch: int, seed: int | None = None) -> Clip:
        """Render ``batch`` clips; with ``seed`` the clips depend only on it (validation sets), else on the stream."""
        gen = self.rng if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        cfg = self.cfg
        p = self._sample_params(batch, gen)
        times = torch.linspace(0, 1, cfg.frames, device=self.device)
        rgb, depth, moving, keys = [], [], [], []
        for j, t in enumerate(times.tolist()):
            s, m1, m2 = self._hit_layers(p, t)
            z, layer = s.min(dim=1)
            m1, m2 = (torch.gather(m, 1, layer[:, None]).squeeze(1) for m in (m1, m2))
            rgb.append(self._shade(p, layer, m1, m2, t))
            depth.append(z[:, None])
            moving.append(_take(p["moving"], layer)[:, None].float())
            if j in (0, cfg.frames - 1):
                keys.append((layer, m1, m2))
        tracks = torch.stack([
            torch.stack([self._track(p, layer, m1, m2, t) for t in times.tolist()], 1) for layer, m1, m2 in keys], 1)
        rgb = torch.stack(rgb, 1)
        rgb = rgb + cfg.noise_std * torch.randn(rgb.shape, generator=gen, device=self.device)
        return Clip(rgb.clamp(0, 1), torch.stack(depth, 1), torch.stack(moving, 1), tracks, times, p["focal"])


def _take_all(values: Tensor, layers: int) -> Tensor:
    """Broadcast per-pixel values ``[B, H, W]`` to every layer ``[B, L, H, W]`` (a view)."""
    return values[:, None].expand(-1, layers, -1, -1)

"""Model configurations: a registry of named dataclasses (``streamsplat``, ``small``, ``tiny``).

``streamsplat`` is the reference architecture exactly (its inference checkpoints load strictly). ``small`` and
``tiny`` are our real-time variants: they take depth as two channels (normalised disparity, validity mask) so one
checkpoint serves RGB-D and RGB-only input, and condition the decoder on pooled encoder tokens instead of DINOv2.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

#: values of ModelConfig.fill_validity
FILL_VALIDITY = ("ones", "known")


def check_fill_validity(value: str) -> str:
    """``value`` if it is one of :data:`FILL_VALIDITY`, else ValueError."""
    if value not in FILL_VALIDITY:
        raise ValueError(f"fill_validity must be one of {FILL_VALIDITY}, not {value!r}")
    return value


@dataclass(frozen=True)
class DinoConfig:
    """DINOv2 ViT with register tokens (defaults: ViT-B/14 with 4 registers, input resized to 252x448)."""

    embed_dim: int = 768
    depth: int = 12
    heads: int = 12
    patch_size: int = 14
    num_registers: int = 4
    pretrain_size: int = 518  # pos-embed grid is pretrain_size // patch_size squared
    input_size: tuple[int, int] = (252, 448)
    weights: str | None = None  # official ``dinov2_vitb14_reg4`` state dict (.pth or .safetensors); never downloaded

    @property
    def num_tokens(self) -> int:
        return (self.input_size[0] // self.patch_size) * (self.input_size[1] // self.patch_size)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines the architecture (and so the checkpoint keys and shapes)."""

    name: str
    image_size: tuple[int, int]  # (H, W) of the network input
    depth_channels: int  # 1: normalised disparity (reference); 2: disparity + validity mask
    width: int  # encoder and decoder width (heads = width // 64)
    encoder_layers: int
    decoder_layers: int
    upsampler_dims: tuple[int, ...]  # one 2x PixelShuffle block per entry
    window: int  # upsampler attention window (contiguous tokens)
    condition: Literal["dinov2", "encoder"]
    patch_size: int = 8
    upsampler_layers: int | tuple[int, ...] = 2  # attention blocks per upsampler stage (an int: the same for all)
    encoder_window: int | None = None  # None: global attention in the encoder
    condition_pool: int = 2  # "encoder" condition: average-pool factor on the token grid
    static_xyz_head: Literal["plain", "sampled"] = "sampled"  # plain: inference head; sampled: truncated normal
    pixel_skip: bool = False  # input-anchored skip (nut_ros/core/pixel_skip.py); False for the reference
    # where the velocities' motion comes from, the velocity head adding a residual: "none" (the head alone),
    # "flow" (classical optical flow, nut_ros/core/motion_prior.py, no weights), "learned" (the correlation flow
    # head inside the model, nut_ros/core/motion_head.py)
    motion_prior: Literal["none", "flow", "learned"] = "none"
    motion_iters: int = 6  # "learned": refinement steps of the flow head
    # validity channel beside a dense depth-from-motion fill: "ones" everywhere (the fill as if measured), "known":
    # 1 where depth from motion's map holds a confirmed value (confidence > 0), 0 elsewhere (a model trained so)
    fill_validity: Literal["ones", "known"] = "ones"
    # px² added to every screen covariance by the rasterizer: the reference's 0.3 blurs a Gaussian per pixel over
    # its neighbours (a 3x3 kernel); our per-pixel model renders with less (docs/EVALUATION.md, session 5)
    raster_lowpass: float = 0.3
    dino: DinoConfig = field(default_factory=DinoConfig)

    def __post_init__(self):
        h, w = self.image_size
        assert h % self.patch_size == 0 and w % self.patch_size == 0, "image size must be a multiple of the patch"
        sizes = [self.num_tokens * 4**i for i in range(1, len(self.upsampler_dims) + 1)]
        assert all(n % self.window == 0 or n <= self.window for n in sizes), "window must divide the token counts"
        assert len(self.stage_layers) == len(self.upsampler_dims), "one upsampler_layers entry per stage"
        check_fill_validity(self.fill_validity)
        if self.condition == "encoder":
            gh, gw = self.token_grid
            assert gh % self.condition_pool == 0 and gw % self.condition_pool == 0, "pool must divide the token grid"

    @property
    def stage_layers(self) -> tuple[int, ...]:
        """Attention blocks of each upsampler stage (0: a PixelShuffle stage only)."""
        if isinstance(self.upsampler_layers, int):
            return (self.upsampler_layers,) * len(self.upsampler_dims)
        return tuple(self.upsampler_layers)

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.token_grid[0] * self.token_grid[1]

    @property
    def gaussian_grid(self) -> tuple[int, int]:
        f = 2 ** len(self.upsampler_dims)
        return self.token_grid[0] * f, self.token_grid[1] * f

    @property
    def gaussians_per_frame(self) -> int:
        return self.gaussian_grid[0] * self.gaussian_grid[1]

    @property
    def feature_dim(self) -> int:
        """Channels of the upsampled per-Gaussian features."""
        return self.upsampler_dims[-1]

    @property
    def condition_dim(self) -> int:
        return self.dino.embed_dim if self.condition == "dinov2" else self.width

    @property
    def condition_tokens(self) -> int:
        if self.condition == "dinov2":
            return self.dino.num_tokens
        return self.num_tokens // self.condition_pool**2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        if d.get("motion_prior") == "dis":  # the name of "flow" in checkpoints written before it was renamed
            d["motion_prior"] = "flow"
        dino = dict(d.pop("dino", {}))
        dino["input_size"] = tuple(dino.get("input_size", DinoConfig.input_size))
        for key in ("image_size", "upsampler_dims"):
            d[key] = tuple(d[key])
        if isinstance(d.get("upsampler_layers"), list):
            d["upsampler_layers"] = tuple(d["upsampler_layers"])
        return ModelConfig(**d, dino=DinoConfig(**dino))


CONFIGS: dict[str, ModelConfig] = {
    # The reference (StreamSplat inference) architecture: 288x512, N = 36,864 per frame, DINOv2 condition.
    "streamsplat": ModelConfig(
        name="streamsplat", image_size=(288, 512), depth_channels=1, width=768, encoder_layers=10,
        decoder_layers=10, upsampler_dims=(384, 192), window=2304, condition="dinov2", static_xyz_head="plain",
    ),
    # Real-time on a robot GPU at 512x288, light condition, 13.2 M parameters (30 MB fp16). One Gaussian per pixel
    # (N = 147,456 per frame): the third upsampler stage is a PixelShuffle without attention, and the pixel skip
    # hands each Gaussian its own pixel (a 2x2 Gaussian grid caps key frames at 21-36 dB on real clips).
    "small": ModelConfig(
        name="small", image_size=(288, 512), depth_channels=2, width=256, encoder_layers=6, decoder_layers=4,
        upsampler_dims=(192, 96, 96), upsampler_layers=(2, 2, 0), window=576, condition="encoder", pixel_skip=True,
        motion_prior="learned", raster_lowpass=0.1,
    ),
    # Several frames/s on 2 CPU cores: 256x144 input, N = 9,216 per frame; one attention block per upsampler stage
    # over 144-token windows keeps encode + decode near 55 ms on 2 cores (docs/BENCHMARKS.md).
    "tiny": ModelConfig(
        name="tiny", image_size=(144, 256), depth_channels=2, width=128, encoder_layers=4, decoder_layers=2,
        upsampler_dims=(64, 32), upsampler_layers=1, window=144, condition="encoder", pixel_skip=True,
        motion_prior="learned", raster_lowpass=0.1,
    ),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """A registered configuration with fields replaced by ``overrides`` (``dino`` may be a dict of its fields)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; choose from {sorted(CONFIGS)}")
    base = CONFIGS[name]
    if isinstance(overrides.get("dino"), dict):
        overrides["dino"] = dataclasses.replace(base.dino, **overrides["dino"])
    return dataclasses.replace(base, **overrides)

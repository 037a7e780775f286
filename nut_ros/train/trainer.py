"""Two-stage trainer: resumable chunks (checkpoint + optimiser + data stream state), bf16 autocast on CUDA,
gradient clipping, warmup + cosine learning rate, JSON-lines training curves and periodic validation images.

Stage 1 trains the static encoder (``gs_predictor``); stage 2 loads a stage-1 checkpoint, freezes it and trains
the decoder, dynamic upsampler, dynamic heads and ``encoder_proj``. Stage 3 fine-tunes a trained pair model's static
encoder for geometry (mixed RGB-only / semi-dense / sensor / fill depth input, real RGB-D beside the generated
scenes) and trains the learned motion head on exact flow (with ``motion_only``, the head alone: the pair model stays
as loaded; with ``geometry_only``, the encoder alone); the decoder side stays as it was. Re-running the same command
continues from ``<out>/last.pt`` until the run's length (``steps`` or ``minutes`` of training) is reached.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nut_ros.core.checkpoint import (read_config, read_state_dict, read_training_state, save_checkpoint,
                                    save_training_state)
from nut_ros.core.model import NutModel, build_model
from nut_ros.train.depth_input import check_modes
from nut_ros.train.objectives import LossWeights, geometry_motion_step, motion_step, stage1_step, stage2_step
from nut_ros.train.rgbd_pairs import RGBDPairs, cat, generated_pairs
from nut_ros.train.scenes import SceneConfig, SceneGenerator
from nut_ros.train.texture_pack import PACK_DIR, load_texture_bank
from nut_ros.train.validation import evaluate, evaluate_pairs, real_pair_sets, save_images

VAL_SEED = 1_000_003
STAGE3_ENCODER_LR = 0.25  #: stage 3: the fine-tuned static encoder's learning rate relative to the motion head's
FADE_STEEPNESS_INIT = 5.0  #: stage 2: initial γ0 (pre-ReLU bias of the temporal-opacity head)


@dataclass
class TrainConfig:
    stage: int  # 1: static encoder, 2: dynamic decoder (encoder frozen), 3: geometry + learned motion
    out: str  # run folder: last.pt, log.jsonl, val_*.jpg, weights.safetensors
    model: str = "tiny"
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields to replace (e.g. in tests)
    init: str | None = None  # run folder, trainer checkpoint (.pt) or weights (.safetensors); stage 2 (where it is
    #                          required) takes only the static encoder from it, unless ``init_decoder``
    init_decoder: bool = False  # stage 2: fine-tune the decoder side from ``init`` too (instead of from scratch)
    grow: bool = False  # stage 1: ``init`` has a coarser Gaussian grid (fewer upsampler stages): see load_grown
    steps: int = 0  # run length in optimiser steps (0: use ``minutes``)
    minutes: float = 0.0  # run length in minutes of training time (0: use ``steps``)
    chunk_minutes: float = 9.0  # stop (and checkpoint) after this much wall time in one invocation
    batch: int = 8
    frames: int = 4  # stage 2 clip length: key frames first and last (t = 0, 1/3, 2/3, 1 as at inference)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    depth_drop: float = 0.3  # probability that a sample is RGB-only
    sample_motion: bool = False  # stage 2: sample velocities (reference) instead of using their mean
    static_log_sigma_init: float = -2.0  # stage 1: initial log σ of the sampled static offsets (bias init)
    raster_impl: str = "auto"  # rasterizer used for training ("torch" | "cuda" | "auto": CUDA kernels on a GPU)
    val_every: int = 250
    val_clips: int = 2
    save_every_s: float = 120.0
    seed: int = 0
    amp: bool = True
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    textures: str = str(PACK_DIR)
    weights: LossWeights = field(default_factory=LossWeights)
    rgbd: str | None = None  # stage 3: packed real RGB-D pairs (nut_ros.train.rgbd_pairs.pack); None: generated only
    real_fraction: float = 0.5  # stage 3: share of each batch from ``rgbd``
    motion_only: bool = False  # stage 3: train the learned motion head alone (the pair model stays as loaded)
    geometry_only: bool = False  # stage 3: train the static encoder alone (the motion head stays as loaded)
    depth_modes: dict | None = None  # stage 3: depth-input modes -> probabilities (None: depth_input.DEPTH_MODES)

    def __post_init__(self):
        if self.stage not in (1, 2, 3):
            raise ValueError("stage must be 1, 2 or 3")
        if (self.steps > 0) == (self.minutes > 0):
            raise ValueError("give exactly one of steps or minutes")
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        if self.motion_only and self.geometry_only:
            raise ValueError("motion_only and geometry_only exclude each other")
        if self.depth_modes is not None:
            check_modes(self.depth_modes)
        if VAL_SEED <= self.seed < VAL_SEED + self.val_clips:
            raise ValueError(f"seed {self.seed} draws the validation clips (seeds {VAL_SEED}-"
                             f"{VAL_SEED + self.val_clips - 1})")


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over ``cfg.warmup`` steps, then cosine from ``lr`` to ``min_lr_ratio·lr`` over the run."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _resolve_init(init: str) -> Path:
    path = Path(init)
    return path / "last.pt" if path.is_dir() else path


def _load_weights(model: NutModel, init: str, prefix: str = "", grow: bool = False, new: str = "") -> None:
    """Load ``init`` (weights or a trainer checkpoint) into ``model``: every key, or only those under ``prefix``
    (then strictly: all of the model's keys under it must be there); ``grow``: see :func:`load_grown`; ``new``:
    the model's keys under this prefix may be missing from ``init`` (a part added since, left at its init)."""
    path = _resolve_init(init)
    state = read_state_dict(path)
    if grow:
        fresh = load_grown(model, state)
        print(f"grown from {path}; at their initialisation: {', '.join(fresh)}")
        return
    if not prefix:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (new and k.startswith(new))]
        if missing or unexpected:
            raise KeyError(f"{path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return
    wanted = {k for k in model.state_dict() if k.startswith(prefix)}
    missing = sorted(wanted - set(state))
    if missing:
        raise KeyError(f"{path} lacks {len(missing)} weights under {prefix!r}, e.g. {missing[0]}")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)


def load_grown(model: NutModel, state: dict[str, torch.Tensor]) -> list[str]:
    """Warm-start ``model`` from the weights of a model with a coarser Gaussian grid (the same configuration with
    fewer upsampler stages, ending at one Gaussian per pixel): every tensor of equal shape is copied, the pixel
    skip's block projection is folded to one pixel (a uniform block gives the same features), the scale head's
    bias is shifted so that splats keep their size relative to the finer grid, and the new stages keep their copy
    init (each child starts as its parent). Returns the tensors left at their initialisation (grid buffers
    included)."""
    own = model.state_dict()
    load = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    key = "gs_predictor.pixel_skip.proj.weight"
    if key in own and key in state and key not in load:
        old, channels = state[key], 3 + model.config.depth_channels
        if own[key].shape != (old.shape[0], channels):
            raise ValueError(f"{key}: growing is for one Gaussian per pixel, got {tuple(own[key].shape)}")
        load[key] = old.reshape(old.shape[0], channels, -1).sum(-1)  # channel-major taps of the block, summed
    grid, scale = "gs_predictor.predictor.x_map", "gs_predictor.predictor.gs_layer.scale.bias"
    if grid in state and scale in load:  # splats keep their size in cells: softplus ≈ exp for these small scales
        load[scale] = load[scale] - 0.5 * math.log(own[grid].numel() / state[grid].numel())
    model.load_state_dict(load, strict=False)
    return sorted(set(own) - set(load))


def load_run(run: str) -> NutModel:
    """The model of a trainer checkpoint (a run folder or its ``last.pt``), with every weight as trained."""
    state = read_training_state(_resolve_init(run))
    cfg = state["config"]
    model = build_model(cfg["model"], **cfg.get("model_overrides", {}))
    model.load_state_dict(state["model"], strict=True)
    return model


def inherit_fill_validity(cfg: TrainConfig) -> None:
    """Stage 3 from ``init`` without a ``fill_validity`` override keeps the init model's: a model trained with
    ``known`` validity continues as one (weights of either kind have the same shapes, so nothing else would tell)."""
    if cfg.stage != 3 or cfg.init is None or "fill_validity" in cfg.model_overrides:
        return
    path = _resolve_init(cfg.init)
    if path.suffix == ".safetensors":
        value = read_config(path).fill_validity
    else:
        value = read_training_state(path)["config"].get("model_overrides", {}).get("fill_validity")
    if value is not None:
        cfg.model_overrides = {**cfg.model_overrides, "fill_validity": value}


def build_for_stage(cfg: TrainConfig) -> NutModel:
    """The model ready for its stage: stage 1 fresh (or fine-tuned from ``init``), stage 2 from the stage-1 weights
    with the encoder frozen."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, **cfg.model_overrides)
    if cfg.stage == 1 and cfg.init is not None:
        _load_weights(model, cfg.init, grow=cfg.grow)
    elif cfg.stage == 1:
        # start with compact, well-localised splats: scale ≈ one Gaussian cell (half a cell with the pixel skip,
        # whose anchored colours are already right), offsets with σ = exp(-2)
        head = model.gs_predictor.predictor
        cell = (1.0 if model.config.pixel_skip else 2.0) / model.config.gaussian_grid[1]
        torch.nn.init.constant_(head.gs_layer["scale"].bias, math.log(math.expm1(cell / 0.1)))
        if head.sampled:
            torch.nn.init.constant_(head.mix_layer["xyz_static_scale"].bias, cfg.static_log_sigma_init)
    elif cfg.stage == 3:
        if cfg.init is None:
            raise ValueError("stage 3 needs --init (a trained pair model: weights or a run)")
        _load_weights(model, cfg.init, new="motion_head.")
        if model.motion_head is None:
            raise ValueError(f"stage 3 trains the learned motion head: {cfg.model} has motion_prior "
                             f"{model.config.motion_prior!r}")
        model.requires_grad_(False)
        model.gs_predictor.requires_grad_(not cfg.motion_only)
        model.motion_head.requires_grad_(not cfg.geometry_only)
    else:
        if cfg.init is None:
            raise ValueError("stage 2 needs --init (a stage-1 run, checkpoint or weights)")
        if cfg.init_decoder:  # fine-tune every weight (a trained pair model, e.g. the shipped weights)
            _load_weights(model, cfg.init)
            return model.freeze_static()
        _load_weights(model, cfg.init, prefix="gs_predictor.")  # the decoder side is trained from scratch
        model.freeze_static()
        # start with fading on (γ0 = 5 before its ReLU, γ1 = σ(0) = 0.5): each frame's Gaussians fade out towards
        # the other key frame. From γ0 = 0 the ReLU can stay shut and frame 0's splats never leave frame 1's render.
        fade = model.gs_dynamic_predictor.gs_layer["opacity_dynamic"].layers[-1]
        torch.nn.init.constant_(fade.bias, 0.0)
        fade.bias.data[0] = FADE_STEEPNESS_INIT
    return model


class Trainer:
    """Runs one chunk of a stage; call :meth:`run` (returns True when the whole run is finished)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(cfg.device)
        inherit_fill_validity(cfg)
        self.model = build_for_stage(cfg).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": params, "lr_scale": scale} for params, scale in self.param_groups()]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
        h, w = self.model.config.image_size
        bank = load_texture_bank(Path(cfg.textures), self.device)
        frames = {1: 1, 2: cfg.frames, 3: 2}[cfg.stage]
        self.scenes = SceneGenerator(SceneConfig(h, w, frames=frames), bank, seed=cfg.seed)
        self.loss_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.val_set = [self.scenes.sample(cfg.batch, seed=VAL_SEED + i) for i in range(cfg.val_clips)]
        self.real = self.real_val = None
        if cfg.stage == 3 and cfg.rgbd:
            grid = self.model.config.gaussian_grid
            fills = "fill" in (cfg.depth_modes or {})  # depth from motion's own fills of the real frames
            self.real = RGBDPairs(cfg.rgbd, (h, w), grid, self.device, "train", seed=cfg.seed, fills=fills)
            self.real_val = RGBDPairs(cfg.rgbd, (h, w), grid, self.device, "val", seed=cfg.seed, fills=fills)
        self.step = 0
        self.train_seconds = 0.0
        self._resume()

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "last.pt"

    def _resume(self) -> None:
        if not self.ckpt_path.exists():
            return
        state = read_training_state(self.ckpt_path)
        self.model.load_state_dict(state["model"], strict=True)
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.train_seconds = state["step"], state["train_seconds"]
        self.scenes.rng.set_state(state["scene_rng"])
        self.loss_gen.set_state(state["loss_rng"])
        if "torch_rng" in state:  # (the sampled heads draw from torch's global generators)
            torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.real is not None:
            self.real.rng.set_state(state["real_rng"])

    def save(self) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                 "train_seconds": self.train_seconds, "scene_rng": self.scenes.rng.get_state(),
                 "loss_rng": self.loss_gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                 "config": dataclasses.asdict(self.cfg)}
        if self.real is not None:
            state["real_rng"] = self.real.rng.get_state()
        save_training_state(state, self.ckpt_path)

    def progress(self) -> float:
        if self.cfg.steps:
            return self.step / self.cfg.steps
        return self.train_seconds / (60.0 * self.cfg.minutes)

    def _log(self, record: dict) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # -- loop -------------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        lr = learning_rate(cfg, self.step, self.progress())
        for group in self.opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        background = torch.rand(3, generator=self.loss_gen, device=self.device)
        if cfg.stage == 3 and cfg.motion_only:
            out = motion_step(self.model, self.pair_batch(), cfg.weights, cfg.amp)
        elif cfg.stage == 3:
            out = geometry_motion_step(self.model, self.pair_batch(), cfg.weights, self.loss_gen, background,
                                       cfg.amp, impl=cfg.raster_impl, depth_modes=cfg.depth_modes,
                                       motion=not cfg.geometry_only)
        else:
            step_fn = stage1_step if cfg.stage == 1 else stage2_step
            out = step_fn(self.model, self.scenes.sample(cfg.batch), cfg.weights, cfg.depth_drop, self.loss_gen,
                          background, cfg.amp, impl=cfg.raster_impl)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        # each trained part clipped on its own (stage 3: encoder and motion head have separate losses)
        norms = [torch.nn.utils.clip_grad_norm_(group["params"], cfg.grad_clip) for group in self.opt.param_groups]
        grad_norm = torch.stack(norms).norm()
        if torch.isfinite(grad_norm):
            self.opt.step()
        self.step += 1
        return {"loss": out.loss.item(), **out.terms, "grad_norm": float(grad_norm), "lr": lr}

    def pair_batch(self):
        """Stage 3: a batch of pairs, ``real_fraction`` of them real RGB-D (when packed), the rest generated."""
        grid = self.model.config.gaussian_grid
        n_real = round(self.cfg.batch * self.cfg.real_fraction) if self.real is not None else 0
        parts = [generated_pairs(self.scenes.sample(self.cfg.batch - n_real), grid)] if n_real < self.cfg.batch else []
        if n_real:
            parts.append(self.real.batch(n_real))
        return cat(parts)

    def param_groups(self) -> list[tuple[list[torch.nn.Parameter], float]]:
        """The trained parameters, one list per part with its learning-rate factor (stage 3: the pretrained
        encoder at ``STAGE3_ENCODER_LR`` of the rate, the new motion head at the full rate)."""
        if self.cfg.stage != 3:
            return [(self.params, 1.0)]
        if self.cfg.motion_only:
            return [(list(self.model.motion_head.parameters()), 1.0)]
        if self.cfg.geometry_only:
            return [(list(self.model.gs_predictor.parameters()), STAGE3_ENCODER_LR)]
        return [(list(self.model.gs_predictor.parameters()), STAGE3_ENCODER_LR),
                (list(self.model.motion_head.parameters()), 1.0)]

    def validate(self) -> dict[str, float]:
        if self.cfg.stage == 3:
            sets = {"gen": [generated_pairs(c, self.model.config.gaussian_grid) for c in self.val_set]}
            if self.real_val is not None:
                sets.update(real_pair_sets(self.real_val, self.cfg.batch))
            metrics = evaluate_pairs(self.model, sets, self.cfg.amp, self.cfg.raster_impl)
            self._log({"step": self.step, "train_seconds": round(self.train_seconds, 1), "val": metrics})
            return metrics
        metrics, shown = evaluate(self.model, self.val_set, self.cfg.stage, self.cfg.amp, self.cfg.raster_impl)
        save_images(shown, self.out / f"val_{self.step:06d}.jpg", self.cfg.stage)
        self._log({"step": self.step, "train_seconds": round(self.train_seconds, 1), "val": metrics})
        return metrics

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.stage == 2 and not self.cfg.sample_motion:
            self.model.gs_dynamic_predictor.eval()  # deterministic velocities: motion is supervised directly

    def run(self) -> bool:
        """Train until the run is complete or this chunk's wall time is used; checkpoint; True when complete."""
        cfg = self.cfg
        self._train_mode()
        start = time.monotonic()
        last_save = start
        if self.step == 0:
            self.validate()
        while self.progress() < 1.0 and time.monotonic() - start < 60.0 * cfg.chunk_minutes:
            t0 = time.monotonic()
            record = self.train_step()
            self.train_seconds += time.monotonic() - t0
            if self.step % 20 == 0 or self.step == 1:
                self._log({"step": self.step, "train_seconds": round(self.train_seconds, 1), **record})
            if self.step % cfg.val_every == 0:
                self.validate()
                self._train_mode()
            if time.monotonic() - last_save > cfg.save_every_s:
                self.save()
                last_save = time.monotonic()
        done = self.progress() >= 1.0
        if done and self.step % cfg.val_every:
            self.validate()
        self.save()
        if done:
            self.export(self.out / "weights.safetensors")
        return done

    def export(self, path: Path) -> None:
        """fp16 safetensors of the whole model (config in the metadata), loadable with ``load_checkpoint``."""
        save_checkpoint(self.model, path, dtype=torch.float16)

"""Growing a model by an upsampler stage to one Gaussian per pixel: the grown model starts as its parent."""
import torch
import torch.nn.functional as F

from nut_ros.core.config import get_config
from nut_ros.core.model import NutModel, build_model
from nut_ros.train.trainer import TrainConfig, Trainer, load_grown

SMALL_INPUT = {"image_size": (64, 128), "window": 128}
PER_PIXEL = {**SMALL_INPUT, "upsampler_dims": (64, 32, 32), "upsampler_layers": (1, 1, 0)}


def _parent() -> NutModel:
    torch.manual_seed(0)
    model = build_model("tiny", **SMALL_INPUT)
    with torch.no_grad():  # heads with real weights, so that equal features are visible in every attribute
        for head in model.gs_predictor.predictor.gs_layer.values():
            head.weight.normal_(std=0.05)
        model.gs_predictor.predictor.gs_layer["scale"].bias.fill_(-2.5)  # about a cell, as trained models have
    return model.eval()


def test_config_stage_layers_and_round_trip():
    cfg = get_config("tiny", **PER_PIXEL)
    assert cfg.stage_layers == (1, 1, 0) and cfg.gaussian_grid == cfg.image_size
    assert type(cfg).from_dict(cfg.to_dict()) == cfg  # JSON lists come back as tuples


def test_grown_model_starts_as_its_parent():
    parent = _parent()
    child = NutModel(get_config("tiny", **PER_PIXEL)).eval()
    fresh = load_grown(child, parent.state_dict())
    assert "gs_predictor.gaussian_upsampler.upsampler_2.residual_fc.weight" in fresh
    assert "gs_predictor.pixel_skip.proj.weight" not in fresh  # folded from the 2x2 block projection

    h, w = SMALL_INPUT["image_size"]
    torch.manual_seed(1)
    blocks = torch.rand(1, 5, h // 2, w // 2)
    x = F.interpolate(blocks, scale_factor=2, mode="nearest")  # every 2x2 block uniform
    rgb, disp = x[:, :3], x[:, 3:]
    with torch.no_grad():
        a, b = parent.encode(rgb, disp), child.encode(rgb, disp)

    def per_pixel(t):  # parent's [1, N, C] block attributes repeated onto its four pixels
        grid = t.reshape(1, h // 2, w // 2, -1).permute(0, 3, 1, 2)
        return F.interpolate(grid, scale_factor=2, mode="nearest").flatten(2).transpose(1, 2)

    torch.testing.assert_close(b.features, per_pixel(a.features), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.rgb, per_pixel(a.rgb), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.opacity, per_pixel(a.opacity), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.xyz[..., 1], per_pixel(a.xyz)[..., 1], atol=1e-5, rtol=1e-5)  # depth slot
    ratio = b.scale / per_pixel(a.scale)  # splats keep their size in cells: half the canonical size
    assert ratio.min() > 0.45 and ratio.max() < 0.56


def test_stage1_grows_from_coarser_weights(tmp_path):
    from nut_ros.core.checkpoint import save_checkpoint

    save_checkpoint(_parent(), tmp_path / "parent.safetensors")
    cfg = TrainConfig(stage=1, out=str(tmp_path / "s1"), model="tiny", model_overrides=PER_PIXEL, steps=1, batch=1,
                      val_every=1, val_clips=1, warmup=1, device="cpu", amp=False,
                      init=str(tmp_path / "parent.safetensors"), grow=True)
    trainer = Trainer(cfg)
    encoder = "gs_predictor.encoder.transformer_encoder.conv.weight"
    torch.testing.assert_close(trainer.model.state_dict()[encoder], _parent().state_dict()[encoder],
                               atol=1e-3, rtol=1e-2)  # fp16 file
    assert trainer.run() and trainer.model.config.gaussian_grid == SMALL_INPUT["image_size"]

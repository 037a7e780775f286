"""Two-stage trainer on the CPU: chunks resume, stage 2 freezes the encoder, exported weights load strictly."""
import json
import math

import pytest
import torch

from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.train.trainer import TrainConfig, Trainer, learning_rate

SMALL_INPUT = {"image_size": (64, 128), "window": 128}  # the tiny architecture on a 4x smaller input


def _cfg(stage: int, out, steps: int, **kw) -> TrainConfig:
    return TrainConfig(stage=stage, out=str(out), model="tiny", model_overrides=SMALL_INPUT, steps=steps, batch=1,
                       frames=3, val_every=2, val_clips=1, warmup=1, device="cpu", amp=False, **kw)


def test_learning_rate_schedule():
    cfg = TrainConfig(stage=1, out="", steps=100, warmup=10, lr=1e-3, min_lr_ratio=0.1)
    assert math.isclose(learning_rate(cfg, 0, 0.0), 1e-4)
    assert math.isclose(learning_rate(cfg, 10, 0.0), 1e-3)
    assert math.isclose(learning_rate(cfg, 50, 1.0), 1e-4)
    with pytest.raises(ValueError):
        TrainConfig(stage=1, out="", steps=10, minutes=1.0)


def test_two_stages_resume_and_export(tmp_path):
    torch.set_num_threads(2)
    s1 = tmp_path / "s1"
    trainer = Trainer(_cfg(1, s1, steps=2))
    assert trainer.run() and trainer.step == 2
    log = [json.loads(line) for line in (s1 / "log.jsonl").read_text().splitlines()]
    assert any("val" in r and math.isfinite(r["val"]["psnr"]) for r in log)
    assert list(s1.glob("val_*.jpg"))

    resumed = Trainer(_cfg(1, s1, steps=3))  # a longer run continues from the checkpoint
    assert resumed.step == 2 and resumed.run() and resumed.step == 3

    s2 = tmp_path / "s2"
    trainer = Trainer(_cfg(2, s2, steps=2, init=str(s1)))
    static_before = {k: v.clone() for k, v in trainer.model.gs_predictor.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in trainer.model.decoder.state_dict().items()}
    assert trainer.run()
    for k, v in trainer.model.gs_predictor.state_dict().items():
        assert torch.equal(v, static_before[k]), f"frozen encoder changed: {k}"
    assert any(not torch.equal(v, decoder_before[k]) for k, v in trainer.model.decoder.state_dict().items())
    val = [json.loads(line)["val"] for line in (s2 / "log.jsonl").read_text().splitlines() if "val" in line]
    assert {"psnr_key", "psnr_mid", "abs_rel_key", "velocity_epe_px", "psnr_key_rgbonly"} <= set(val[-1])

    model = load_checkpoint(s2 / "weights.safetensors")
    assert model.config.name == "tiny"
    for k, v in model.state_dict().items():
        expected = trainer.model.state_dict()[k].float()
        assert torch.allclose(v, expected, rtol=1e-2, atol=1e-3), k  # fp16 round trip


def test_a_resumed_run_continues_as_the_uninterrupted_one(tmp_path):
    """Resuming restores every random generator the steps draw from (the sampled heads use torch's global one)."""
    torch.set_num_threads(2)
    whole = Trainer(_cfg(1, tmp_path / "whole", steps=4))
    for _ in range(4):
        whole.train_step()
    parts = Trainer(_cfg(1, tmp_path / "parts", steps=4))
    for _ in range(2):
        parts.train_step()
    parts.save()  # (as a chunk ends)
    resumed = Trainer(_cfg(1, tmp_path / "parts", steps=4))
    assert resumed.step == 2
    for _ in range(2):
        resumed.train_step()
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, whole.model.state_dict()[k]), k


def test_the_training_seed_may_not_draw_the_validation_clips():
    from nut_ros.train.trainer import VAL_SEED

    with pytest.raises(ValueError, match="validation clips"):
        TrainConfig(stage=1, out="", steps=1, seed=VAL_SEED + 1)


def test_stage1_fine_tunes_from_weights(tmp_path):
    torch.set_num_threads(2)
    first = Trainer(_cfg(1, tmp_path / "a", steps=1))
    first.run()
    tuned = Trainer(_cfg(1, tmp_path / "b", steps=1, init=str(tmp_path / "a" / "weights.safetensors")))
    exported = load_checkpoint(tmp_path / "a" / "weights.safetensors").state_dict()
    for k, v in tuned.model.state_dict().items():
        assert torch.allclose(v, exported[k].float(), rtol=1e-2, atol=1e-3), k
    fresh = Trainer(_cfg(1, tmp_path / "c", steps=1, seed=5))
    assert any(not torch.allclose(v, exported[k].float(), rtol=1e-2, atol=1e-3)
               for k, v in fresh.model.state_dict().items())


def test_stage2_takes_only_the_encoder_and_export_keeps_the_run(tmp_path):
    from nut_ros.train.cli import main
    from nut_ros.train.trainer import FADE_STEEPNESS_INIT

    torch.set_num_threads(2)
    Trainer(_cfg(1, tmp_path / "s1", steps=1)).run()
    first = Trainer(_cfg(2, tmp_path / "s2", steps=1, init=str(tmp_path / "s1")))
    first.run()
    fade = first.model.gs_dynamic_predictor.gs_layer["opacity_dynamic"].layers[-1].bias
    assert fade[0].item() != FADE_STEEPNESS_INIT  # trained

    # a second stage 2 from the first one's weights: same encoder, fresh decoder (fading on)
    again = Trainer(_cfg(2, tmp_path / "s2b", steps=1, init=str(tmp_path / "s2" / "weights.safetensors")))
    src = load_checkpoint(tmp_path / "s2" / "weights.safetensors").state_dict()
    for k, v in again.model.gs_predictor.state_dict().items():
        assert torch.allclose(v, src["gs_predictor." + k].float(), rtol=1e-2, atol=1e-3), k
    new_fade = again.model.gs_dynamic_predictor.gs_layer["opacity_dynamic"].layers[-1].bias
    assert new_fade[0].item() == FADE_STEEPNESS_INIT and new_fade[1].item() == 0.0

    # export reproduces the run as trained (not a fresh decoder)
    assert main(["export", str(tmp_path / "s2"), str(tmp_path / "out.safetensors")]) == 0
    exported = load_checkpoint(tmp_path / "out.safetensors").state_dict()
    for k, v in first.model.state_dict().items():
        assert torch.allclose(exported[k].float(), v.float(), rtol=1e-2, atol=1e-3), k


def test_stage3_trains_encoder_and_motion_head_only(tmp_path):
    torch.set_num_threads(2)
    s1 = tmp_path / "s1"
    Trainer(_cfg(1, s1, steps=1)).run()
    s3 = tmp_path / "s3"
    trainer = Trainer(_cfg(3, s3, steps=2, init=str(s1)))  # stage-1 weights lack the motion head: it starts fresh
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.run()
    changed = {k.split(".")[0] for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"gs_predictor", "motion_head"}
    val = [json.loads(line)["val"] for line in (s3 / "log.jsonl").read_text().splitlines() if "val" in line]
    assert val[-1]["gen_flow_epe_zero"] > 0 and math.isfinite(val[-1]["gen_flow_epe"])
    assert load_checkpoint(s3 / "weights.safetensors").motion_head is not None


def test_stage3_motion_only_changes_the_motion_head_alone(tmp_path):
    torch.set_num_threads(2)
    s1 = tmp_path / "s1"
    Trainer(_cfg(1, s1, steps=1)).run()
    trainer = Trainer(_cfg(3, tmp_path / "m", steps=2, init=str(s1), motion_only=True))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.run()
    changed = {k.split(".")[0] for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"motion_head"}
    log = [json.loads(line) for line in (tmp_path / "m" / "log.jsonl").read_text().splitlines()]
    epes = [r["flow_epe"] for r in log if "flow_epe" in r]
    assert epes and all(math.isfinite(e) for e in epes)


def test_stage3_geometry_only_on_fills_changes_the_encoder_alone(tmp_path):
    torch.set_num_threads(2)
    s1 = tmp_path / "s1"
    Trainer(_cfg(1, s1, steps=1)).run()
    out = tmp_path / "g"
    cfg = _cfg(3, out, steps=2, init=str(s1), geometry_only=True, depth_modes={"none": 0.5, "fill": 0.5})
    cfg.model_overrides = {**SMALL_INPUT, "fill_validity": "known"}
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.run()
    changed = {k.split(".")[0] for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"gs_predictor"}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert not any("flow" in r for r in log if "val" not in r)  # no flow loss trained
    val = [r["val"] for r in log if "val" in r][-1]
    assert all(math.isfinite(val[k]) for k in ("gen_abs_rel_fill", "gen_abs_rel_fill_input", "gen_psnr_fill"))
    assert load_checkpoint(out / "weights.safetensors").config.fill_validity == "known"
    # continued from those weights, or from the run, without saying: still "known" (the shapes would not tell)
    for init in (out / "weights.safetensors", out):
        again = _cfg(3, tmp_path / f"again_{init.suffix or 'run'}", steps=1, init=str(init), geometry_only=True)
        assert Trainer(again).model.config.fill_validity == "known"
        assert again.model_overrides["fill_validity"] == "known"  # saved with the run: its export keeps it
    said = _cfg(3, tmp_path / "ones", steps=1, init=str(out / "weights.safetensors"), geometry_only=True)
    said.model_overrides = {**SMALL_INPUT, "fill_validity": "ones"}
    assert Trainer(said).model.config.fill_validity == "ones"
    with pytest.raises(ValueError, match="exclude each other"):
        _cfg(3, out, steps=2, init=str(s1), geometry_only=True, motion_only=True)


@pytest.mark.parametrize("argv, says", [
    (["stage1", "--model", "huge", "--steps", "1"], "unknown model config 'huge'"),
    (["stage3", "--init", "{tmp}/none.safetensors", "--steps", "1"], "none.safetensors: no such file"),
    (["stage3", "--init", "{tmp}/none.safetensors", "--loss-weights", '{"nonexistent": 1}', "--steps", "1"],
     "unexpected keyword argument"),
])
def test_option_faults_end_before_training_with_exit_code_2(tmp_path, capsys, argv, says):
    from nut_ros.train.cli import main

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main(argv) == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize("argv", [["stage1", "--minutes", "-5"], ["stage3", "--steps", "1", "--loss-weights", "{bad"],
                                  ["stage3", "--steps", "1", "--depth-modes", "[1, 2]"]])
def test_malformed_options_are_argparse_errors(tmp_path, argv):
    from nut_ros.train.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--out", str(tmp_path / "run")])
    assert exit_.value.code == 2

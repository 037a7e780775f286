"""The evaluation suite's machinery on a synthetic RGB-D clip (random-init tiny model, no ../shared)."""
import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from nut_ros.core.checkpoint import save_checkpoint
from nut_ros.core.model import build_model
from nut_ros.tools.eval_suite import (CLIPS, PACKAGE_DIR, RUNS, SEQUENCE_RUNS, ClipSpec, RunSpec, assess_goals,
                                     build_bag, main, run_suite)
from nut_ros.tools.make_bag import START_NS

H, W, SOURCE_FRAMES, FPS = 60, 80, 10, 10.0
CLIP = ClipSpec("synth", "data/synth", why="test", start=2, frames=7, resize=None, fps=FPS, pattern="*.color.png",
                depth_pattern="*.depth.png", intrinsics=(70.0, 70.0, 39.5, 29.5))
SUITE_RUNS = (RunSpec("synth_depth", "synth", "synthetic, depth in", input_depth=True),
              RunSpec("synth_rgb", "synth", "synthetic, RGB only"))


def write_clip(folder):
    """A pattern sliding 6 px per frame in front of a 2 m plane."""
    folder.mkdir(parents=True)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    for i in range(SOURCE_FRAMES):
        x = u - 6 * i
        rgb = np.stack([0.5 + 0.4 * np.sin(x / 5), 0.5 + 0.4 * np.cos(v / 4), 0.5 + 0.3 * np.sin((x + v) / 7)], -1)
        cv2.imwrite(str(folder / f"{i:03d}.color.png"), (rgb[..., ::-1] * 255).round().astype(np.uint8))
        cv2.imwrite(str(folder / f"{i:03d}.depth.png"), np.full((H, W), 2000, np.uint16))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suite")
    write_clip(tmp / "shared" / "data" / "synth")
    torch.manual_seed(0)
    ckpt = tmp / "tiny.safetensors"
    save_checkpoint(build_model("tiny", image_size=(48, 96)), ckpt)
    summary = run_suite(tmp / "shared", tmp / "work", ["--checkpoint", str(ckpt), "--quiet"], clips=(CLIP,),
                        runs=SUITE_RUNS, meta={"weights": "random init"}, log=lambda _: None,
                        sequence_runs=())
    return tmp, summary


def test_summary_rows(suite):
    tmp, summary = suite
    assert json.loads((tmp / "work" / "summary.json").read_text()) == json.loads(json.dumps(summary))
    depth_run, rgb_run = summary["runs"]
    for row in (depth_run, rgb_run):
        # bag frames 2..8: keys at bag frames 0, 3, 6; the 4 frames between them are interpolated
        assert (row["key_frames"], row["interp_frames"], row["stride"]) == (3, 4, 3)
        assert row["model_resolution"] == [48, 96]
        assert 0 < row["key_psnr"] < 60 and 0 < row["key_psnr_256"] < 60 and -1 <= row["key_ssim_256"] <= 1
        assert 0 < row["interp_psnr_256"] < 60 and row["latency_p50_ms"] > 0
        assert row["real_motion"] == (row["blend_psnr_256"] < 30)
    assert depth_run["depth_abs_rel_aligned"] is not None
    for proto in ("_aligned", "_affine"):  # the baselines stand beside every depth figure
        assert (depth_run[f"depth_abs_rel{proto}_constant"] is not None
                and depth_run[f"depth_abs_rel{proto}_ramp"] is not None)
    assert depth_run["input_depth"] and not rgb_run["input_depth"]
    assert depth_run["depth_abs_rel"] < 0.06  # metric depth of the plane passes through the pipeline
    # a pattern sliding over a plane is a homography: depth from motion refuses it, and without any depth input
    # the pipeline publishes no depth, so the RGB-only run has no depth figure, only its sources
    assert rgb_run["depth_sources"] == {"none": 3}
    assert all(rgb_run[k] is None for k in ("depth_abs_rel", "depth_abs_rel_aligned", "depth_abs_rel_affine"))
    assert depth_run["blend_psnr_256"] == pytest.approx(rgb_run["blend_psnr_256"])  # same frames, same baseline
    report = json.loads((tmp / "work" / "runs" / "synth_rgb" / "report.json").read_text())
    assert report["frames"][0]["stamp_ns"] == START_NS + round(2 * 1e9 / FPS)  # the segment starts at frame 2
    md = (tmp / "work" / "summary.md").read_text()
    table, depth_table = md.split("## Depth beside its baselines")
    assert table.count("| synthetic, ") == 2 and "| synthetic, depth in | metric |" in depth_table
    assert "| synthetic, RGB only |" not in depth_table  # no depth figure, no row
    assert "Goals: key PSNR >= 30 dB" in md and "| synth | `data/synth` |" in md


def test_bag_cache(suite):
    tmp, _ = suite
    bags = tmp / "work" / "bags"
    files = sorted(p for p in (bags / "synth").rglob("*") if p.is_file())
    before = [p.stat().st_mtime_ns for p in files]
    assert build_bag(CLIP, tmp / "shared", bags) == bags / "synth"
    assert [p.stat().st_mtime_ns for p in files] == before  # same spec: reused
    shorter = dataclasses.replace(CLIP, frames=4)
    build_bag(shorter, tmp / "shared", bags)
    assert json.loads((bags / "synth.spec.json").read_text())["frames"] == 4
    build_bag(CLIP, tmp / "shared", bags)  # back to the suite's spec for the other tests


def test_goals():
    def row(name, key, interp, blend, abs_rel=None, depth=False, warp=None):
        return {"run": name, "key_psnr_256": key, "interp_psnr_256": interp, "blend_psnr_256": blend,
                "flow_warp_psnr_256": warp, "real_motion": blend < 30, "depth_abs_rel": abs_rel, "input_depth": depth}

    goals = assess_goals([row("a", 31.0, 25.0, 24.0, warp=24.5), row("b", 29.0, 20.0, 35.0),
                          row("c", 30.5, 26.0, 27.0, abs_rel=0.03, depth=True, warp=25.0)])
    assert not goals["key_psnr"]["met"] and goals["key_psnr"]["failed"] == ["b"]
    assert not goals["interp_vs_blend"]["met"] and goals["interp_vs_blend"]["failed"] == ["c"]  # b is near-static
    assert goals["interp_vs_flow_warp"]["passed"] == ["a", "c"] and goals["interp_vs_flow_warp"]["met"]
    assert goals["depth_abs_rel"]["met"] and goals["depth_abs_rel"]["passed"] == ["c"]
    assert not assess_goals([row("a", 31.0, 25.0, 35.0)])["interp_vs_blend"]["met"]  # no real-motion run: unproven


def test_suite_tables():
    names = {c.name for c in CLIPS}
    assert all(r.clip in names for r in RUNS) and len({r.name for r in RUNS}) == len(RUNS)
    assert all((PACKAGE_DIR / c.source).is_dir() for c in CLIPS if c.root == "package")
    assert all(c.frames is None or c.frames // r.stride <= 50 for r in RUNS for c in CLIPS if c.name == r.clip)


def test_a_failing_run_is_listed_and_the_others_go_on(tmp_path):
    write_clip(tmp_path / "shared" / "data" / "synth")
    missing = dataclasses.replace(CLIP, name="gone", source="data/gone")
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model("tiny", image_size=(48, 96)), ckpt)
    runs = (RunSpec("gone_rgb", "gone", "missing clip"), SUITE_RUNS[1])
    summary = run_suite(tmp_path / "shared", tmp_path / "work", ["--checkpoint", str(ckpt), "--quiet"],
                        clips=(CLIP, missing), runs=runs, log=lambda _: None, sequence_runs=SEQUENCE_RUNS[:1])
    assert [r["run"] for r in summary["runs"]] == ["synth_rgb"]
    assert [f["run"] for f in summary["failed"]] == ["gone_rgb", SEQUENCE_RUNS[0].name]
    assert summary["failed"][0]["reason"].startswith("run gone_rgb: clip gone: ")
    assert f"sequence {SEQUENCE_RUNS[0].source}: no frames in " in summary["failed"][1]["reason"]
    md = (tmp_path / "work" / "summary.md").read_text()
    assert "- gone_rgb: run gone_rgb: clip gone: " in md and "Goals (over the runs that completed):" in md


@pytest.mark.parametrize("argv, says", [(["--shared", "{tmp}"], "has no data/ folder"),
                                        (["--shared", "{tmp}/shared"], "run apple: clip apple: cannot open video"),
                                        (["--model", "huge"], "'huge' is not a model configuration")])
def test_setup_faults_get_one_line_reasons(tmp_path, capsys, argv, says):
    (tmp_path / "shared" / "data").mkdir(parents=True)  # a shared folder without the clips
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*argv, "--work", str(tmp_path / "work"), "--runs", "apple", "--quiet"]) == 1
    assert says in capsys.readouterr().err


def test_a_run_that_processed_no_key_frame_is_a_failed_run_with_the_reasons(tmp_path):
    """A replay whose every frame was refused before the pipeline (here larger than max_input_pixels) has nothing to
    score: it is listed under the failed runs with the reasons, not as a row of dashes beside the others."""
    write_clip(tmp_path / "shared" / "data" / "synth")
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model("tiny", image_size=(48, 96)), ckpt)
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_input_pixels: 100\n")
    summary = run_suite(tmp_path / "shared", tmp_path / "work", ["--checkpoint", str(ckpt), "--params", str(params),
                                                                 "--quiet"],
                        clips=(CLIP,), runs=SUITE_RUNS[1:], log=lambda _: None, sequence_runs=())
    assert summary["runs"] == [] and [f["run"] for f in summary["failed"]] == ["synth_rgb"]
    reason = summary["failed"][0]["reason"]
    assert reason.startswith("run synth_rgb: no key frame was processed (7x image: 80x60 is more than "
                             "max_input_pixels="), reason
    assert "- synth_rgb: run synth_rgb: no key frame was processed" in (tmp_path / "work" / "summary.md").read_text()

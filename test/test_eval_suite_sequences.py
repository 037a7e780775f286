"""The eval suite's sequence runs (image folders with poses, fed to the pipeline directly): a generated room written in
the 7-Scenes layout, with and without odometry; and the readers on the shared data."""
import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED
from generated_room import K, pose, render

from nut_ros.core.checkpoint import save_checkpoint
from nut_ros.core.model import build_model
from nut_ros.pipeline import sequences
from nut_ros.tools.eval_suite import SequenceRun, run_sequence, run_suite, summary_row


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("room")
    folder = tmp / "data" / "room"
    folder.mkdir(parents=True)
    np.savetxt(folder / "camera-intrinsics.txt", [[K.fx, 0, K.cx], [0, K.fy, K.cy], [0, 0, 1]])
    for i in range(12):  # the suite keeps every 3rd: 4 frames, 12 cm apart
        T = pose(x=0.04 * i, yaw_deg=0.3 * i)
        rgb, depth, _ = render(T)
        stem = folder / f"frame-{i:06d}"
        cv2.imwrite(f"{stem}.color.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(f"{stem}.depth.png", np.round(depth * 1000).astype(np.uint16))
        np.savetxt(f"{stem}.pose.txt", T)
    torch.manual_seed(0)
    ckpt = tmp / "tiny.safetensors"
    save_checkpoint(build_model("tiny", image_size=(48, 96)), ckpt)
    return tmp, ["--checkpoint", str(ckpt), "--quiet"]


@pytest.mark.parametrize("odometry", [True, False])
def test_sequence_run(room, odometry):
    tmp, options = room
    run = SequenceRun("room", "seven_scenes", "data/room", "room", poses=odometry)
    report = run_sequence(run, tmp, tmp / "runs" / "room", options)
    row = summary_row(run, report)
    assert row["key_frames"] == 4 and row["stride"] == 3 and not row["input_depth"]
    assert row["depth_sources"] == {"none": 1, "odometry" if odometry else "motion": 3}
    assert (row["depth_abs_rel"] is not None) == odometry  # metric without alignment only with odometry
    assert row["depth_abs_rel_affine_input"] < 0.1 < row["depth_abs_rel_affine_constant"]
    assert (tmp / "runs" / "room" / "report.md").is_file()


@pytest.mark.parametrize("options, says", [(["--checkpoint", "{bad}"], "cannot load the torch backend from {bad}: "),
                                           (["--backend", "onnxruntime"], "needs its exported files")])
def test_a_sequence_run_that_cannot_start_is_listed_and_the_others_go_on(room, tmp_path, options, says):
    """Bad weights, or a backend without its exported files: each sequence run fails with the reason, as a bag run
    does, and the suite still writes its summaries."""
    tmp, _ = room
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    runs = (SequenceRun("a", "seven_scenes", "data/room", "a"), SequenceRun("b", "seven_scenes", "data/room", "b"))
    work = tmp_path / "work"
    summary = run_suite(tmp, work, [o.format(bad=bad) for o in options] + ["--quiet"], runs=(), log=lambda _: None,
                        sequence_runs=runs)
    assert summary["runs"] == [] and [f["run"] for f in summary["failed"]] == ["a", "b"]
    assert all(f["reason"].startswith("run ") and says.format(bad=bad) in f["reason"] for f in summary["failed"])
    assert (work / "summary.json").is_file() and "- b: run b: cannot load the " in (work / "summary.md").read_text()


@pytest.mark.shared
def test_readers_on_the_shared_sequences():
    tum = SHARED / "data" / "train_rgbd" / "tum_fr1_rpy"
    [a, b] = sequences.tum(tum, [0, 30])
    for sf in (a, b):
        R = sf.frame.camera_pose[:3, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-6) and sf.frame.rgb.shape == (480, 640, 3)
        assert sf.depth_m.shape == (240, 320) and 0.3 < np.nanmedian(sf.depth_m) < 5
    assert 0.0 < b.frame.stamp_ns - a.frame.stamp_ns < 2e9
    [s] = sequences.seven_scenes(SHARED / "data" / "sevenscenes_redkitchen", [0])
    assert s.frame.intrinsics.fx == 585.0 and s.depth_m.shape == (480, 640) and 0.5 < np.nanmedian(s.depth_m) < 4


@pytest.mark.shared
def test_training_packs_tum_frames_as_the_evaluation_reads_them():
    """The packed training frames of TUM are undistorted like the evaluation's (the rigid flow of a pinhole K holds
    on them): the packed colour is the evaluation's frame cropped to 16:9 and resized, within JPEG's error."""
    from nut_ros.train.rgbd_pairs import _crop_169, _frame

    tum = SHARED / "data" / "train_rgbd" / "tum_fr1_rpy"
    [sf] = sequences.tum(tum, [100])
    index = (tum / "frames.txt").read_text().splitlines()
    name = [line.split()[0] for line in index if not line.startswith("#")][100]
    rgb_path, depth_path = tum / "rgb" / f"{name}.jpg", tum / "depth" / f"{name}.png"
    size = (288, 512)

    def packed(undistort):
        jpg, _, _ = _frame(rgb_path, depth_path, sequences.TUM_FR1[0], size, 95, tum=undistort)
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    want = cv2.resize(_crop_169(sf.frame.rgb)[0], size[::-1], interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(packed(True) - want).mean() < 2.0  # JPEG at quality 95
    assert np.abs(packed(False) - want).mean() > 2 * np.abs(packed(True) - want).mean()  # distortion shows


def test_tum_pose_at_interpolates_between_samples_and_refuses_outside_them():
    from nut_ros.core.rotations import quaternion_pose

    half = np.sqrt(0.5)  # a quarter turn about z, stored with the opposite sign: the shorter arc must be taken
    gt = np.array([[10.0, 0, 0, 0, 0, 0, 0, 1], [10.01, 1, 2, 3, 0, 0, -half, -half]])
    np.testing.assert_allclose(sequences.tum_pose_at(gt, 10.0), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(sequences.tum_pose_at(gt, 10.01), quaternion_pose([1, 2, 3], [0, 0, half, half]),
                               atol=1e-12)
    middle = sequences.tum_pose_at(gt, 10.005)
    np.testing.assert_allclose(middle[:3, 3], [0.5, 1, 1.5], atol=1e-9)
    np.testing.assert_allclose(np.degrees(np.arctan2(middle[1, 0], middle[0, 0])), 45.0, atol=1e-6)
    assert sequences.tum_pose_at(gt, 9.999) is None and sequences.tum_pose_at(gt, 10.011) is None

"""test/bench/interp_study.py on a sliding-pattern bag written here (shipped `tiny` weights)."""
import json

import numpy as np
import torch
import pytest

from nut_ros.ros.bag_io import BagWriter
from nut_ros.ros.images import numpy_to_image
from nut_ros.core.motion_prior import sparse_to_dense_available
from bench.interp_study import main, parse_flow, parse_variant

H, W = 72, 128


def frame(i: int) -> np.ndarray:
    """A textured pattern sliding right by 3 px per frame."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    u = u - 3 * i
    rgb = np.stack([0.5 + 0.4 * np.sin(u / 4), 0.5 + 0.4 * np.cos(v / 3 + u / 9), 0.5 + 0.3 * np.sin((u - v) / 5)], -1)
    return (rgb * 255).round().astype(np.uint8)


def test_flow_variants_beat_no_motion_on_a_sliding_pattern(tmp_path, capsys):
    bag = tmp_path / "bags" / "slide"
    bag.parent.mkdir()
    with BagWriter(bag, storage="sqlite3") as w:
        for i in range(7):
            stamp = 10**9 + i * 33_333_333
            w.write("/camera/image_raw", stamp, numpy_to_image(frame(i), "rgb8", stamp, "cam", "rosbags"))
    variants = ["zero/union", "head/union", "dis-medium-512-check/union", "dis-medium-512-check/separate", "zero/warp",
                "head/warp"]
    if sparse_to_dense_available():
        variants.append("s2d-512/union/0.8")
    assert main(["--bags", str(tmp_path / "bags"), "--clips", "slide", "--model", "tiny", "--variants", *variants]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["slide"]
    assert set(scores) == {"blend", "flow_warp", *variants}
    assert scores["flow_warp"] > scores["blend"] + 1.0  # a sliding pattern: the DIS warp follows it, blending cannot
    assert scores["dis-medium-512-check/union"] > scores["zero/union"] + 1.0
    assert scores["head/union"] > scores["zero/union"] + 1.0  # the shipped model's own (learned) motion
    assert scores["dis-medium-512-check/separate"] > scores["blend"]
    # the key frames warped by the variant's flow: no motion is blending, the model's flow follows the slide
    assert scores["zero/warp"] == pytest.approx(scores["blend"], abs=1e-3)
    assert scores["head/warp"] > scores["blend"] + 1.0
    if sparse_to_dense_available():
        assert scores["s2d-512/union/0.8"] > scores["zero/union"] + 1.0
    assert torch.is_grad_enabled()  # the tool leaves autograd as it found it (later tests train models)


@pytest.mark.skipif(not sparse_to_dense_available(), reason="OpenCV without contrib modules")
def test_flow_specs_name_the_pipeline_prior():
    prior = parse_flow("s2d-512", (144, 256), (72, 128))
    assert (prior.preset, prior.factor, prior.check) == ("sparse_to_dense", 1, False)
    prior = parse_flow("dis-fast-128-check", (144, 256), (72, 128))
    assert (prior.preset, prior.factor, prior.check) == ("fast", 2, True)
    assert parse_flow("s2d-512-check", (144, 256), (72, 128)).check
    assert parse_variant("s2d-512/union/0.8") == ("s2d-512", "union", 0.8)
    assert parse_variant("zero/separate") == ("zero", "separate", 0.0)


def test_unknown_variants_are_refused():
    with pytest.raises(ValueError, match="unknown flow"):
        parse_flow("raft-1-2", (144, 256), (72, 128))
    for spec in ("dis-fast-256-maybe", "dis", "s2d", "s2d-check", "dis-medium-check"):
        with pytest.raises(ValueError, match="unknown flow"):
            parse_flow(spec, (144, 256), (72, 128))
    for variant in ("zero/blend", "zero/union/0.8/x", "zero/union/wide"):
        with pytest.raises(ValueError, match="variant"):
            parse_variant(variant)

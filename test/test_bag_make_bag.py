"""nut_ros_make_bag: video and image-folder sources, depth pairing, intrinsics, stride/resize/fps, both storages."""
import math

import cv2
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros.bag_io import bag_topics, read_camera_frames
from nut_ros.ros.camera_info import camera_info_to_intrinsics
from nut_ros.ros.images import image_to_depth_m, image_to_rgb
from nut_ros.tools.make_bag import START_NS, main, make_bag


def _colour(i):
    return np.full((48, 64, 3), (20 * i, 100, 255 - 20 * i), np.uint8)


@pytest.fixture
def rgbd_folder(tmp_path):
    """7 colour PNGs (named 1..7 so that natural sorting matters: 10-style ordering) and 7 16-bit depth PGMs."""
    color, depth = tmp_path / "color", tmp_path / "depth"
    color.mkdir(), depth.mkdir()
    for i in range(7):
        cv2.imwrite(str(color / f"{i + 1}.png"), cv2.cvtColor(_colour(i), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(depth / f"{i + 1}.pgm"), np.full((48, 64), 1000 + 250 * i, np.uint16))
    cv2.imwrite(str(color / "10.png"), cv2.cvtColor(_colour(7), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(depth / "10.pgm"), np.full((48, 64), 1000 + 250 * 7, np.uint16))
    return color, depth


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_folder_with_depth(tmp_path, rgbd_folder, storage, compressed):
    color, depth = rgbd_folder
    out = tmp_path / "bag"
    summary = make_bag(color, out, depth_dir=depth, intrinsics=(50.0, 51.0, 31.5, 23.5), stride=2, fps=5.0,
                       resize=(32, 24), compressed=compressed, storage=storage)
    assert summary.frames == 4 and (summary.width, summary.height) == (32, 24)
    assert summary.intrinsics == Intrinsics(50.0, 51.0, 31.5, 23.5, 64, 48).scaled(32, 24)
    suffix = "/compressed" if compressed else ""
    assert bag_topics(out)["/camera/image_raw" + suffix].endswith("CompressedImage" if compressed else "/Image")
    frames = list(read_camera_frames(out, "/camera/image_raw" + suffix, summary.topics["depth"], "/camera/camera_info"))
    assert [f.stamp_ns for f in frames] == [START_NS + k * 400_000_000 for k in range(4)]  # stride 2 at 5 Hz
    for k, frame in enumerate(frames):
        i = 2 * k  # source index after the stride, natural order 1, 3, 5, 7 (not 10 after 1)
        rgb = image_to_rgb(frame.image)
        assert (rgb.shape == (24, 32, 3)
                and np.abs(rgb.astype(int) - _colour(i)[:24, :32]).max() <= (3 if compressed else 0))
        np.testing.assert_array_equal(image_to_depth_m(frame.depth), np.float32((1000 + 250 * i) / 1000))
        assert camera_info_to_intrinsics(frame.info) == summary.intrinsics


def test_video_source_with_guessed_intrinsics(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(9):
        writer.write(cv2.cvtColor(_colour(i), cv2.COLOR_RGB2BGR))
    writer.release()
    code = main([str(video), str(tmp_path / "bag"), "--max-frames", "3", "--stride", "3", "--hfov", "90"])
    assert code == 0
    frames = list(read_camera_frames(tmp_path / "bag", "/camera/image_raw", info_topic="/camera/camera_info"))
    assert [f.stamp_ns - START_NS for f in frames] == [0, 300_000_000, 600_000_000]  # the video's own 10 fps
    for k, frame in enumerate(frames):
        assert np.abs(image_to_rgb(frame.image).astype(int) - _colour(3 * k)).mean() < 6  # MJPG is lossy
    intr = camera_info_to_intrinsics(frames[0].info)
    assert intr == Intrinsics.from_fov(64, 48, 90.0) and math.isclose(intr.fx, 32.0)


def test_a_truncated_video_is_written_as_far_as_it_decodes_with_a_warning(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(40):
        writer.write(np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8))
    writer.release()
    whole = make_bag(video, tmp_path / "whole")
    assert whole.frames == 40 and whole.notes == []
    video.write_bytes(video.read_bytes()[:video.stat().st_size // 2])  # a copy cut short
    assert main([str(video), str(tmp_path / "cut")]) == 0
    written = len(list(read_camera_frames(tmp_path / "cut", "/camera/image_raw")))
    assert 0 < written < 40
    assert f"declares 40 frames but only {written} could be decoded" in capsys.readouterr().err


def test_errors(tmp_path, rgbd_folder):
    color, depth = rgbd_folder
    with pytest.raises(FileNotFoundError, match="no files"):
        make_bag(tmp_path / "color", tmp_path / "b1", pattern="*.jpg")
    with pytest.raises(ValueError, match="cannot open video"):
        make_bag(tmp_path / "missing.mp4", tmp_path / "b2")
    with pytest.raises(ValueError, match="stride"):
        make_bag(color, tmp_path / "b3", stride=0)
    with pytest.raises(SystemExit):
        main([str(color), str(tmp_path / "b4"), "--resize", "64by48"])


@pytest.mark.parametrize("option", [["--hfov", "0"], ["--hfov", "180"], ["--fps", "0"], ["--fps", "-5"],
                                    ["--fps", "nan"], ["--fps", "inf"], ["--resize", "0x0"], ["--max-frames", "0"],
                                    ["--intrinsics", "0,50,32,24"], ["--intrinsics", "50,50,nan,24"]])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, rgbd_folder, option, capsys):
    color, _ = rgbd_folder
    with pytest.raises(SystemExit) as exit_:
        main([str(color), str(tmp_path / "bag"), *option])
    assert exit_.value.code == 2 and option[0] in capsys.readouterr().err
    assert not (tmp_path / "bag").exists()


def test_a_failed_bag_is_removed_and_the_reason_printed(tmp_path, rgbd_folder, capsys):
    """An unreadable image fails half way: no partial bag is left to block (or pass for) the next attempt; an
    existing folder is never removed."""
    color, _ = rgbd_folder
    (color / "5.png").write_bytes(b"not a png")
    assert main([str(color), str(tmp_path / "bag")]) == 1
    assert "cannot read image" in capsys.readouterr().err and not (tmp_path / "bag").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    assert main([str(color), str(tmp_path / "kept")]) == 1
    assert (tmp_path / "kept" / "mine.txt").read_text() == "x"


def test_depth_maps_among_the_frames_and_a_second_camera_are_refused(tmp_path, rgbd_folder, capsys):
    color, depth = rgbd_folder
    mixed = tmp_path / "mixed"  # 7-Scenes' layout: frame-N.color.png beside frame-N.depth.png
    mixed.mkdir()
    for i in range(2):
        cv2.imwrite(str(mixed / f"frame-{i}.color.png"), _colour(i))
        cv2.imwrite(str(mixed / f"frame-{i}.depth.png"), np.full((48, 64), 1000, np.uint16))
    assert main([str(mixed), str(tmp_path / "b1")]) == 1
    assert "depth?" in capsys.readouterr().err
    assert main([str(mixed), str(tmp_path / "b2"), "--pattern", "*.color.png"]) == 0
    cv2.imwrite(str(color / "11.png"), np.zeros((24, 32, 3), np.uint8))
    assert main([str(color), str(tmp_path / "b3")]) == 1
    assert "one camera" in capsys.readouterr().err


@pytest.mark.shared
def test_real_rgbd_clip(tmp_path, shared_dir):
    data = shared_dir / "data" / "slambook2_rgbd5"
    summary = make_bag(data / "color", tmp_path / "bag", depth_dir=data / "depth",
                       intrinsics=(518.0, 519.0, 325.5, 253.5), fps=5.0, storage="sqlite3")
    frames = list(read_camera_frames(tmp_path / "bag", "/camera/image_raw", "/camera/depth"))
    assert summary.frames == len(frames) == 5
    depth = image_to_depth_m(frames[0].depth)
    assert depth.shape == (480, 640) and 0.2 < np.isnan(depth).mean() < 0.45  # ~32 % invalid in this clip
    assert 0.5 < np.nanmedian(depth) < 6.0


def test_depth_of_half_the_size_is_kept_and_of_another_aspect_refused(tmp_path, rgbd_folder):
    """TUM's layout (320x240 depth beside 640x480 colour): the depth is written at its size, the node resizes it
    onto the image; a depth image of another aspect ratio is not aligned to the image."""
    color, _ = rgbd_folder
    half, other = tmp_path / "half", tmp_path / "other"
    half.mkdir(), other.mkdir()
    for i in range(8):
        cv2.imwrite(str(half / f"{i}.png"), np.full((24, 32), 1500, np.uint16))
        cv2.imwrite(str(other / f"{i}.png"), np.full((48, 48), 1500, np.uint16))
    summary = make_bag(color, tmp_path / "b1", depth_dir=half, max_frames=2)
    frames = list(read_camera_frames(tmp_path / "b1", "/camera/image_raw", summary.topics["depth"]))
    assert image_to_depth_m(frames[0].depth).shape == (24, 32) and image_to_rgb(frames[0].image).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="another aspect ratio"):
        make_bag(color, tmp_path / "b2", depth_dir=other, max_frames=2)
    assert not (tmp_path / "b2").exists()


def test_poses_outnumbering_the_images_are_refused(tmp_path, rgbd_folder, capsys):
    """Poses pair with the images by index: a trajectory at its own rate (TUM's 100 Hz groundtruth.txt) would give
    each frame the wrong pose; one pose per image passes, with a stride or a frame limit too."""
    color, _ = rgbd_folder

    def tum(n):
        path = tmp_path / f"poses_{n}.txt"
        path.write_text("# timestamp tx ty tz qx qy qz qw\n" + "".join(f"{i / 100:.2f} {i} 0 0 0 0 0 1\n"
                                                                        for i in range(n)))
        return str(path)

    assert main([str(color), str(tmp_path / "bag"), "--poses", tum(24)]) == 1
    assert "24 poses for 8 images" in capsys.readouterr().err and not (tmp_path / "bag").exists()
    assert main([str(color), str(tmp_path / "ok"), "--poses", tum(8)]) == 0
    assert main([str(color), str(tmp_path / "strided"), "--poses", tum(8), "--stride", "2"]) == 0
    assert main([str(color), str(tmp_path / "limited"), "--poses", tum(8), "--max-frames", "3"]) == 0
    assert main([str(color), str(tmp_path / "few"), "--poses", tum(3)]) == 1
    assert "3 poses for 8 images" in capsys.readouterr().err and not (tmp_path / "few").exists()


@pytest.mark.parametrize("option", [["--max-frames", "3"], ["--start", "2"], ["--max-frames", "2", "--stride", "3"]])
def test_poses_and_depth_are_counted_over_the_whole_folder(tmp_path, rgbd_folder, capsys, option):
    """Pairing by index needs one pose and one depth file per image of the folder: picking some frames with
    --max-frames, --start or --stride does not let a 100 Hz trajectory or a longer depth folder through."""
    color, depth = rgbd_folder
    poses = tmp_path / "poses.txt"
    poses.write_text("".join(f"{i / 100:.2f} {i} 0 0 0 0 0 1\n" for i in range(24)))
    assert main([str(color), str(tmp_path / "bag"), "--depth", str(depth), "--poses", str(poses), *option]) == 1
    assert "24 poses for 8 images" in capsys.readouterr().err and not (tmp_path / "bag").exists()
    cv2.imwrite(str(depth / "11.pgm"), np.full((48, 64), 1000, np.uint16))
    assert main([str(color), str(tmp_path / "bag"), "--depth", str(depth), *option]) == 1
    err = capsys.readouterr().err
    assert f"{depth} has 9 depth files for 8 images" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bag").exists()


def test_depth_files_must_number_the_images(tmp_path, rgbd_folder, capsys):
    """More depth files than images are refused like fewer, before anything is written; so are those of a video
    read to its end."""
    color, depth = rgbd_folder
    (depth / "10.pgm").unlink()
    assert main([str(color), str(tmp_path / "few"), "--depth", str(depth)]) == 1
    assert "has 7 depth files for 8 images" in capsys.readouterr().err and not (tmp_path / "few").exists()
    for i in range(7, 9):
        cv2.imwrite(str(depth / f"{i + 1}.pgm"), np.full((48, 64), 1000, np.uint16))
    assert main([str(color), str(tmp_path / "many"), "--depth", str(depth)]) == 1
    assert "has 9 depth files for 8 images" in capsys.readouterr().err and not (tmp_path / "many").exists()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(6):
        writer.write(cv2.cvtColor(_colour(i), cv2.COLOR_RGB2BGR))
    writer.release()
    assert main([str(video), str(tmp_path / "video"), "--depth", str(depth)]) == 1
    assert "has 9 depth files for 6 images" in capsys.readouterr().err and not (tmp_path / "video").exists()


def test_depth_is_written_before_its_image_in_millimetres_of_any_unit_and_resized_centre_exact(tmp_path):
    """``depth_scale`` (metres per unit) converts raw depth to the bag's millimetres (TUM's 5000 per metre: 0.0002;
    0 stays unknown, beyond 65.535 m too); a resized depth image keeps the source pixel under each pixel's centre,
    as the resized CameraInfo maps centres; each depth message comes before its image, at the same stamp."""
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.msg_types import rosbags_typestore

    color, depth = tmp_path / "color", tmp_path / "depth"
    color.mkdir(), depth.mkdir()
    cv2.imwrite(str(color / "0.png"), np.zeros((36, 48, 3), np.uint8))
    raw = np.tile(np.arange(48, dtype=np.uint16) * 1000, (36, 1))  # 0.2 m per column at 5000 per metre
    raw[0, 0], raw[0, 1] = 0, 0
    cv2.imwrite(str(depth / "0.png"), raw)
    make_bag(color, tmp_path / "bag", depth_dir=depth, resize=(16, 12), depth_scale=0.0002)
    with AnyReader([tmp_path / "bag"], default_typestore=rosbags_typestore()) as reader:
        order = [(c.topic, t) for c, t, _ in reader.messages()]
    assert [topic for topic, _ in order].index("/camera/depth") < [topic for topic, _ in order].index(
        "/camera/image_raw") and len({t for _, t in order}) == 1
    [frame] = read_camera_frames(tmp_path / "bag", "/camera/image_raw", "/camera/depth", "/camera/camera_info")
    metres = image_to_depth_m(frame.depth)
    source_cols = (np.arange(16) + 0.5) * 3 - 0.5  # each pixel's centre in the source (Intrinsics.scaled's map)
    assert np.array_equal(source_cols, source_cols.round())  # (a 3x shrink: whole source pixels, 1, 4, 7, ...)
    np.testing.assert_allclose(metres[5], source_cols * 0.2, rtol=1e-6)
    with pytest.raises(ValueError, match="depth_scale"):
        make_bag(color, tmp_path / "bag2", depth_dir=depth, depth_scale=0.0)

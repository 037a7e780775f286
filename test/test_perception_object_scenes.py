"""Generated object scenes: exact depth, ids, object motion, determinism (small images: cheap)."""
import numpy as np

from nut_ros.train.object_scenes import BACKGROUND_ID, ObjectSceneConfig, ObjectSceneGenerator

CFG = ObjectSceneConfig(height=45, width=80, frames=6)


def test_deterministic_and_shaped():
    a, b = ObjectSceneGenerator(CFG).scene(3), ObjectSceneGenerator(CFG).scene(3)
    assert len(a) == CFG.frames
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.rgb, fb.rgb) and np.array_equal(fa.depth_m, fb.depth_m)
        assert fa.rgb.shape == (45, 80, 3) and fa.rgb.dtype == np.uint8 and fa.depth_m.dtype == np.float32
    assert np.allclose(a[0].camera_pose, np.eye(4))  # world = the first camera frame
    assert a[1].stamp_ns - a[0].stamp_ns == round(1e9 / CFG.fps)


def test_depth_and_ids_are_exact_for_an_object():
    gen = ObjectSceneGenerator(CFG)
    frame = gen.scene(5, camera_motion=False)[0]
    k = frame.intrinsics
    for obj in frame.objects:
        v, u = np.nonzero(frame.ids == obj.oid)
        if not len(u):
            continue
        z = frame.depth_m[v, u]
        pts = np.column_stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z])
        inside = np.all(np.abs(pts - obj.center) <= obj.size / 2 + 1e-3, axis=1)
        assert inside.all()  # every pixel labelled with the object back-projects onto its box / sphere
        assert obj.visible_px == len(u)
    assert (frame.ids == BACKGROUND_ID).any() and np.isfinite(frame.depth_m).all() and (frame.depth_m > 0).all()


def test_objects_move_at_their_velocity_and_static_scenes_do_not():
    gen = ObjectSceneGenerator(CFG)
    frames = gen.scene(7)
    dt = 1 / CFG.fps
    checked = 0
    for f0, f1 in zip(frames[:-1], frames[1:]):
        for o0, o1 in zip(f0.objects, f1.objects):
            assert o0.moving == bool(np.any(o0.velocity))
            if np.array_equal(o0.velocity, o1.velocity):  # no bounce off a wall in between
                assert np.allclose(o1.center - o0.center, o1.velocity * dt, atol=1e-9)
                checked += o0.moving
    assert checked > 0
    still = gen.scene(7, moving=False)
    assert not any(o.moving for f in still for o in f.objects)

"""Constant-velocity tracking: stable ids through crossings, velocity estimates, track life cycle."""
from dataclasses import replace

import numpy as np

from nut_ros.perception.params import ObstacleParams
from nut_ros.perception.tracking import Detection, MultiObjectTracker

DT = 1 / 15


def detections(centres, velocities):
    c, v = np.asarray(centres, float).reshape(-1, 3), np.asarray(velocities, float).reshape(-1, 3)
    return Detection(c, v, np.full_like(c, 0.5), np.ones(len(c)), np.eye(3) * 0.3 ** 2)


def test_two_crossing_objects_keep_their_ids_and_velocities():
    rng = np.random.default_rng(0)
    tracker = MultiObjectTracker(ObstacleParams(), seed=0)
    v = np.array([[1.0, 0, 0], [-1.0, 0, 0.3]])
    start = np.array([[-1.5, 0, 3.0], [1.5, 0, 2.7]])  # they pass 0.3 m apart at t = 1.5 s
    ids_seen, errors = [], []
    for j in range(45):
        true = start + v * j * DT
        s = tracker.update(detections(true + rng.normal(0, 0.04, true.shape), v + rng.normal(0, 0.2, v.shape)), DT)
        if j >= 4:  # 5 detections and 0.27 m travelled (confirm_hits 3, min_travel 0.1)
            assert s.confirmed.sum() == 2
            order = [int(np.argmin(np.linalg.norm(s.mean[:, :3] - t, axis=1))) for t in true]
            ids_seen.append(tuple(s.ids[i] for i in order))
            errors.append(np.linalg.norm(s.mean[order, 3:] - v, axis=1))
    assert len(set(ids_seen)) == 1
    errors = np.concatenate(errors[5:])  # after the filter has averaged a few noisy velocities
    assert np.median(errors) < 0.15 and errors.max() < 0.45  # measurements: 0.35 m/s error (3-D, std 0.2 per axis)
    assert all(i.version == 4 for i in ids_seen[0])


def test_life_cycle_confirm_coast_and_drop():
    p = ObstacleParams(confirm_hits=3, max_misses=2, min_travel=0.0, min_agreement=-1.0)
    tracker = MultiObjectTracker(p, seed=1)
    det = detections([[0, 0, 2]], [[0, 0, 0]])
    empty = detections(np.zeros((0, 3)), np.zeros((0, 3)))
    assert not tracker.update(det, DT).confirmed.any()
    tracker.update(det, DT)
    s = tracker.update(det, DT)
    assert s.confirmed.tolist() == [True]
    first = s.ids[0]
    assert tracker.update(empty, DT).ids == [first]  # coasting
    assert tracker.update(empty, DT).ids == [first]
    assert tracker.update(empty, DT).ids == []  # dropped after max_misses


def test_a_cluster_that_stays_put_is_never_confirmed():
    rng = np.random.default_rng(3)
    tracker = MultiObjectTracker(ObstacleParams(min_travel=0.2, travel_window=10), seed=3)
    for _ in range(30):  # static structure whose noisy velocity looks like motion
        s = tracker.update(detections(np.array([1.0, 0, 4]) + rng.normal(0, 0.03, 3), [0.8, 0, 0]), DT)
    assert len(s.ids) == 1 and not s.confirmed.any()
    for j in range(6):  # it starts moving at 0.8 m/s: confirmed once it has travelled 0.2 m
        s = tracker.update(detections([1.0 + 0.8 * DT * (j + 1), 0, 4], [0.8, 0, 0]), DT)
    assert s.confirmed.all()


def test_a_cluster_wandering_against_its_measured_velocity_is_never_confirmed():
    rng = np.random.default_rng(5)
    p = ObstacleParams(confirm_hits=2, min_travel=0.05, min_agreement=0.5, gate=2.0)
    wander, mover = MultiObjectTracker(p, seed=5), MultiObjectTracker(p, seed=6)
    for j in range(20):  # drifts along -z by 0.05 m per frame while its flow says +x (noise on static structure)
        s = wander.update(detections([1.0 + rng.normal(0, 0.01), 0, 4 - 0.05 * j], [0.8, 0, 0]), DT)
    assert len(s.ids) == 1 and not s.confirmed.any()
    for j in range(3):  # the same drift with a velocity that points along it: confirmed after 2 detections
        s = mover.update(detections([1.0, 0, 4 - 0.05 * j], [0, 0, -0.5]), DT)
    assert s.confirmed.all()


def test_far_detection_starts_a_new_track():
    tracker = MultiObjectTracker(ObstacleParams(gate=0.5, max_misses=0), seed=2)
    tracker.update(detections([[0, 0, 2]], [[0, 0, 0]]), DT)
    s = tracker.update(detections([[2, 0, 2]], [[0, 0, 0]]), DT)
    assert len(s.ids) == 1 and s.mean[0, 0] == 2  # the old track was dropped at its miss, a new one made


def test_agreeing_travel_confirms_after_early_hits():
    p = ObstacleParams(confirm_hits=3, early_hits=2, early_agreement=0.9, min_travel=0.05, min_agreement=0.3)
    along, across = MultiObjectTracker(p, seed=7), MultiObjectTracker(p, seed=8)
    for j in range(2):  # 0.07 m per frame along +x; measured velocity along it, or 60 degrees off (cosine 0.5)
        s_along = along.update(detections([1.0 + 0.07 * j, 0, 3], [1.0, 0, 0]), DT)
        s_across = across.update(detections([1.0 + 0.07 * j, 0, 3], [0.5, 0, 0.87]), DT)
    assert s_along.confirmed.all() and not s_across.confirmed.any()
    assert across.update(detections([1.14, 0, 3], [0.5, 0, 0.87]), DT).confirmed.all()  # at confirm_hits
    late = MultiObjectTracker(replace(p, early_hits=3), seed=9)  # early_hits = confirm_hits: no early path
    for j in range(2):
        s = late.update(detections([1.0 + 0.07 * j, 0, 3], [1.0, 0, 0]), DT)
    assert not s.confirmed.any()


def test_a_detection_that_may_not_found_a_track_only_keeps_one_going():
    tracker = MultiObjectTracker(ObstacleParams(), seed=4)
    small = replace(detections([[0, 0, 4]], [[0, 0, 0]]), founding=np.array([False]))
    assert tracker.update(small, DT).ids == []  # unmatched and not founding: no track
    tracker.update(detections([[0, 0, 4]], [[0, 0, 0]]), DT)
    s = tracker.update(replace(small, center=np.array([[0.05, 0, 4]])), DT)
    assert len(s.ids) == 1 and s.hits.tolist() == [2] and s.misses.tolist() == [0]  # matched: it counts


def test_a_decisive_detection_starts_a_confirmed_track():
    tracker = MultiObjectTracker(ObstacleParams(), seed=10)
    det = replace(detections([[0, 0, 3], [1, 0, 3]], [[0, 0, -0.8], [0, 0, 0]]), decisive=np.array([True, False]))
    s = tracker.update(det, DT)
    assert s.confirmed.tolist() == [False, True] or s.confirmed.tolist() == [True, False]
    assert s.confirmed[int(np.argmin(np.abs(s.mean[:, 0])))]  # the decisive one
    matched = replace(det, center=det.center + [0.05, 0, 0], decisive=np.array([False, True]))
    s = tracker.update(matched, DT)  # decisive only counts for a detection that starts a track
    assert s.confirmed.sum() == 1 and len(s.ids) == 2


def test_age_counts_every_frame_since_creation_and_coasting_is_counted_apart():
    """Age: frames since the track was created (frames that only coast included); hits over age is the share of
    frames with a detection; a coasted frame is no miss (the track lives on) but is counted in ``coasted``."""
    tracker = MultiObjectTracker(ObstacleParams(confirm_hits=1, min_travel=0.0, min_agreement=-1.0, max_misses=6),
                                 seed=0)
    empty = detections(np.zeros((0, 3)), np.zeros((0, 3)))
    seen = []
    for frame in ("det", "miss", "miss", "coast", "det", "miss"):
        if frame == "coast":
            tracker.coast(DT)
        else:
            tracker.update(detections([[0, 0, 3]], [[0, 0, 0]]) if frame == "det" else empty, DT)
        s = tracker.state
        seen.append((int(s.age[0]), int(s.hits[0]), int(s.misses[0]), tracker.coasted))
    assert seen == [(1, 1, 0, 0), (2, 1, 1, 0), (3, 1, 2, 0), (4, 1, 2, 1), (5, 2, 0, 0), (6, 2, 1, 0)]


def test_predict_adds_white_acceleration_noise_to_the_propagated_covariance():
    p = ObstacleParams(accel_std=2.0)
    tracker = MultiObjectTracker(p, seed=0)
    tracker.update(detections([[0, 0, 3]], [[1, 0, 0]]), DT)
    before = tracker.state.cov[0].copy()
    tracker.predict(0.1)
    f = np.eye(6)
    f[:3, 3:] = 0.1 * np.eye(3)
    q = np.zeros((6, 6))  # per axis: [[dt^4/4, dt^3/2], [dt^3/2, dt^2]] times accel_std^2
    for a in range(3):
        q[np.ix_([a, a + 3], [a, a + 3])] = 4.0 * np.array([[0.1 ** 4 / 4, 0.1 ** 3 / 2], [0.1 ** 3 / 2, 0.1 ** 2]])
    np.testing.assert_allclose(tracker.state.cov[0], f @ before @ f.T + q, atol=1e-15)


def test_a_tracks_size_is_smoothed_over_its_detections():
    tracker = MultiObjectTracker(ObstacleParams(), seed=0)
    for size, want in ((1.0, 1.0), (2.0, 1.3), (2.0, 1.51)):  # 0.7 of the old, 0.3 of the new
        det = detections([[0, 0, 3]], [[0, 0, 0]])
        s = tracker.update(replace(det, size=np.full((1, 3), size)), DT)
        np.testing.assert_allclose(s.size, [[want] * 3])


def test_coasted_frames_count_as_misses_at_the_next_update():
    """A confirmed track that coasted through many frames (no trusted camera motion) and is not matched when
    detection resumes has missed all of them: it is dropped, not kept for max_misses more frames."""
    p = ObstacleParams(confirm_hits=1, min_travel=0.0, min_agreement=-1.0, max_misses=6)
    tracker = MultiObjectTracker(p, seed=0)
    empty = detections(np.zeros((0, 3)), np.zeros((0, 3)))
    assert tracker.update(detections([[0, 0, 3]], [[0.5, 0, 0]]), DT).confirmed.tolist() == [True]
    for _ in range(3):
        tracker.coast(DT)
    s = tracker.update(empty, DT)
    assert s.misses.tolist() == [4] and tracker.coasted == 0  # 3 coasted frames and this one
    for _ in range(45):
        tracker.coast(DT)
    assert tracker.update(empty, DT).ids == []  # past max_misses

"""Depth rate from geometry: a wall approaching, a static wall under camera motion, depth edges unknown (torch
on the CPU, points made with numpy)."""
import numpy as np
import torch

from nut_ros.perception.depth_change import DepthChange, cell_mean, image_cells
from perception_synth import DT, K, yaw_pose


class Change(DepthChange):
    """DepthChange taking and giving numpy arrays, with the processor's bookkeeping: points are remembered in the
    camera frame of a pose, and ``rate`` compares against the remembered frame and keeps its grids."""

    grids = None

    def remember(self, points, pose, dt=0.0):
        super().remember(torch.from_numpy(points @ pose[:3, :3].T.astype(np.float32) + pose[:3, 3].astype(np.float32)),
                         dt)

    def rate(self, points, k, pose, dt):
        compared = self.compared(dt)
        if compared is None:
            self.grids = None
            return np.full(len(points), np.nan, np.float32)
        rot, trans = (torch.from_numpy(a.astype(np.float32)) for a in (pose[:3, :3], pose[:3, 3]))
        rate, self.grids = super().rate(torch.from_numpy(points), compared[0], rot, trans, compared[1], k)
        return rate.numpy()

    def shift_velocity(self, points, k, max_shift, min_gain):
        if self.grids is None:
            return np.full((len(points), 2), np.nan, np.float32)
        return super().shift_velocity(torch.from_numpy(points), self.grids, k, max_shift, min_gain).numpy()

    def slope(self, points, k):
        if self.grids is None:
            return np.zeros(len(points), np.float32)
        return super().slope(torch.from_numpy(points), self.grids, k).numpy()

    def reset(self):
        super().reset()
        self.grids = None


def wall(z, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, K.width, n), rng.uniform(0, K.height, n)
    return np.column_stack([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, np.full(n, z)]).astype(np.float32)


def test_approaching_wall_and_static_wall_under_camera_motion():
    change = Change(4, 0.1)
    still = np.eye(4)
    change.remember(wall(3.0), still)
    rate = change.rate(wall(3.0 - 0.8 * DT, seed=1), K, still, DT)
    assert abs(np.nanmedian(rate) + 0.8) < 0.05 and np.isfinite(rate).mean() > 0.9

    # camera moves 5 cm forward and turns slightly: a static wall has no depth rate
    change.reset()
    world = wall(4.0)
    change.remember(world, still)
    pose = yaw_pose(0.01, (0.0, 0.0, 0.05))
    in_cam = ((world - pose[:3, 3]) @ pose[:3, :3]).astype(np.float32)
    assert np.all(np.isnan(Change(4, 0.1).rate(in_cam, K, pose, DT)))  # nothing remembered yet
    rate = change.rate(in_cam, K, pose, DT)
    assert abs(np.nanmedian(rate)) < 0.05


def test_depth_edges_are_unknown():
    change = Change(4, 0.1)
    near, far = wall(1.0), wall(5.0, seed=2)
    u = lambda p: K.fx * p[:, 0] / p[:, 2] + K.cx  # noqa: E731
    step = K.cx + 2.5  # a step in depth through the middle of a column of cells
    left = np.concatenate([near[u(near) < step], far[u(far) >= step]])
    change.remember(left, np.eye(4))
    rate = change.rate(left, K, np.eye(4), DT)
    centre_col = np.abs(u(left) - step) < 1
    assert np.isnan(rate[centre_col]).mean() > 0.5 and np.nanmax(np.abs(rate)) < 1e-3


def test_a_longer_baseline_measures_over_the_older_frame_and_revealed_background_is_unknown():
    change = Change(4, 0.1, baseline=3, max_speed=3.0)
    still = np.eye(4)
    for j in range(4):  # a wall approaching at 0.6 m/s; the rate compares against the frame 3 back
        pts = wall(3.0 - 0.6 * DT * j, seed=j)
        if j == 3:
            rate = change.rate(pts, K, still, DT)
        change.remember(pts, still, DT)
    assert abs(np.nanmedian(rate) + 0.6) < 0.05 and np.isfinite(rate).mean() > 0.9
    # a near surface gone, the far wall behind it seen now: receding faster than max_speed is not a motion
    change.reset()
    change.remember(wall(1.0), still)
    assert np.all(np.isnan(change.rate(wall(5.0, seed=3), K, still, DT)))
    # something now in front of where the wall was: approaching, clipped to -max_speed
    change.reset()
    change.remember(wall(5.0), still)
    assert np.nanmin(change.rate(wall(1.0, seed=4), K, still, DT)) == -3.0


def test_cell_mean_averages_values_within_image_cells():
    pts = wall(3.0, n=2000)
    values = np.random.default_rng(1).normal(size=(2000, 3))
    out = cell_mean(torch.from_numpy(pts), torch.from_numpy(values), K, 8).numpy()
    cells = image_cells(torch.from_numpy(pts), K, 8)[0].numpy()
    first = cells == cells[0]
    np.testing.assert_allclose(out[first], np.broadcast_to(values[first].mean(0), (first.sum(), 3)), atol=1e-12)
    assert out[:, 0].std() < values[:, 0].std()


def box_in_front_of_wall(x0, seed):
    """A 0.5 m wide box face at 3 m in front of a wall at 5 m (camera frame points, 2 px spacing like tiny)."""
    v, u = np.mgrid[0:K.height:2, 0:K.width:2].astype(np.float64) + 0.5
    x_at = lambda z: (u - K.cx) * z / K.fx  # noqa: E731
    on_box = (x_at(3.0) >= x0) & (x_at(3.0) < x0 + 0.5) & (np.abs((v - K.cy) * 3.0 / K.fy) < 0.4)
    z = np.where(on_box, 3.0, 5.0) + np.random.default_rng(seed).normal(0, 0.005, u.shape)
    pts = np.stack([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z], -1).reshape(-1, 3).astype(np.float32)
    return pts, on_box.reshape(-1)


def test_shift_velocity_reads_a_sideways_mover_from_its_depth_silhouette():
    still = np.eye(4)
    change = Change(4, 0.1, baseline=3)
    for j in range(4):  # the box moves right at 1.2 m/s: 3 frames = 0.24 m = 14.6 px = 3.7 cells of 4 px
        pts, on_box = box_in_front_of_wall(-0.3 + 1.2 * DT * j, seed=j)
        if j < 3:
            change.remember(pts, still, DT if j else 0.0)
    assert np.all(np.isnan(change.shift_velocity(pts, K, 4, 0.05)))  # before rate() has compared the frames
    change.rate(pts, K, still, DT)
    vel = change.shift_velocity(pts, K, 4, 0.05)
    moved = np.isfinite(vel[on_box, 0])
    assert moved.mean() > 0.5
    assert abs(np.median(vel[on_box][moved, 0]) - 1.2) < 0.3 and np.abs(np.median(vel[on_box][moved, 1])) < 0.1
    # the static wall around it: no shift found (NaN) or none
    wall_far = ~on_box & (np.abs(pts[:, 0] - pts[on_box, 0].mean()) > 1.5)
    assert np.all(np.nan_to_num(vel[wall_far]) == 0)
    # nothing moved: NaN everywhere (no shift beats standing still)
    change.reset()
    change.remember(pts, still)
    change.rate(pts, K, still, DT)
    assert np.all(np.isnan(change.shift_velocity(pts, K, 2, 0.05)))


def test_slope_reads_a_slanted_wall_and_ignores_a_one_sided_depth_edge():
    change = Change(4, 0.1)
    assert np.all(change.slope(wall(2.0), K) == 0)  # before rate() has binned the frame: unknown
    rng = np.random.default_rng(3)
    u, v = rng.uniform(0, K.width, 40000), rng.uniform(0, K.height, 40000)
    # a wall whose depth grows by 0.5 m per metre across the view: z = 2 + 0.5 x, with x = (u - cx) z / fx
    z = 2.0 / (1 - 0.5 * (u - K.cx) / K.fx)
    slanted = np.column_stack([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z]).astype(np.float32)
    change.remember(slanted, np.eye(4))
    change.rate(slanted, K, np.eye(4), DT)
    assert abs(np.median(change.slope(slanted, K)) - 0.5) < 0.1
    # a frontal wall beside a far one: the cells along the step keep the flat side's slope (about 0)
    front, back = wall(1.0), wall(5.0, seed=4)
    scene = np.concatenate([front[front[:, 0] < 0], back[back[:, 0] >= 0]])
    change.reset()
    change.remember(scene, np.eye(4))
    change.rate(scene, K, np.eye(4), DT)
    assert np.percentile(change.slope(scene, K), 99) < 0.2

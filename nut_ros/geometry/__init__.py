"""Multi-view geometry of the camera's own motion (ROS-free, numpy and core OpenCV): relative pose, triangulation
and depth from motion (:mod:`.depth_from_motion`)."""

"""ROS-free core: model, Gaussian state, geometry."""

"""ROS 2 layer: message conversions (``conversions``), rosbag2 I/O (``bag_io``), the node and its parameters.

The conversion and bag modules need no rclpy (they also work on rosbags messages); only the node does.
"""

"""nut_ros.ros"""

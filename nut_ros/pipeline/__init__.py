"""nut_ros.pipeline"""

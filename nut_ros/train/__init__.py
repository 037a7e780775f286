"""nut_ros.train"""

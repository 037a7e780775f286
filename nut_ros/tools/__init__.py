"""nut_ros.tools"""

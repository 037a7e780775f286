"""nut_ros.render"""

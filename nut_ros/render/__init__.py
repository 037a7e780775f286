"""Orthographic Gaussian rasterizer (reference conventions): public API, projection and the pure-torch backend."""
from nut_ros.render.pair_budget import PairBudget
from nut_ros.render.projection import Projection, project_gaussians
from nut_ros.render.rasterizer import RenderOutput, rasterize

__all__ = ["PairBudget", "Projection", "RenderOutput", "project_gaussians", "rasterize"]

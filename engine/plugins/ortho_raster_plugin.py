"""TensorRT plugin ``OrthoRasterizer`` (version 1, namespace ``nut_ros``): IPluginV3 written in Python.

Contract (the ONNX node ``nut_ros::OrthoRasterizer`` written by ``engine/export_onnx.py`` maps onto it):

* inputs, float32, linear: ``means [B,N,3]``, ``scales [B,N,3]``, ``rotations [B,N,4]`` (w,x,y,z),
  ``opacities [B,N,1]``, ``colors [B,N,3]`` (the reference rasterizer's arguments, ``Gaussians.at(t)``);
* outputs, float32: ``rgb [B,3,H,W]`` (with ``T·background``), ``depth [B,1,H,W]`` (Σ αT d), ``alpha [B,1,H,W]``;
* attributes (plugin fields): ``height``, ``width`` (INT32), ``tile_size`` (INT32, must be ``ORTHO_TILE`` of the
  kernels' configuration header, 16), ``background`` (FLOAT32 x3), ``lowpass`` (FLOAT32, px² added to each screen
  covariance: the exported model's ``raster_lowpass``; 0.3, the reference's, when a graph exported before the field
  existed lacks it), ``max_pairs_per_gaussian`` (INT32, default 16: the sort buffer holds
  ``B·N·max_pairs_per_gaussian`` tile-Gaussian pairs; pairs beyond it are dropped).

``enqueue`` runs the kernels of ``nut_ros/render/csrc/`` (compiled by pycuda, :mod:`engine.plugins.raster_launcher`)
on TensorRT's stream with TensorRT's raw device pointers and workspace. Works with the ``tensorrt`` bindings and with
TensorRT-RTX's (``tensorrt_rtx_bindings``), whichever is importable.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import numpy as np

from nut_ros.render.kernel_config import TILE
from nut_ros.render.projection import LOWPASS

PLUGIN_NAME = "OrthoRasterizer"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "nut_ros"
ONNX_DOMAIN = "nut_ros"
INPUTS = ("means", "scales", "rotations", "opacities", "colors")
OUTPUTS = ("rgb", "depth", "alpha")
DEFAULT_MAX_PAIRS_PER_GAUSSIAN = 16
INT32_MAX = 2**31 - 1
_REGISTERED: list = []  # creators handed to TensorRT stay referenced for the life of the process


@dataclass(frozen=True)
class RasterAttributes:
    """The plugin's serialised attributes."""

    height: int
    width: int
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)
    lowpass: float = LOWPASS
    tile_size: int = TILE
    max_pairs_per_gaussian: int = DEFAULT_MAX_PAIRS_PER_GAUSSIAN

    def __post_init__(self):
        object.__setattr__(self, "lowpass", float(np.float32(self.lowpass)))  # a FLOAT32 field, as the kernel sees it
        if self.tile_size != TILE:
            raise ValueError(f"{PLUGIN_NAME}: tile_size must be {TILE} (compiled into the kernels)")
        if self.height <= 0 or self.width <= 0 or self.max_pairs_per_gaussian <= 0 or len(self.background) != 3 \
                or not self.lowpass >= 0:
            raise ValueError(f"{PLUGIN_NAME}: invalid attributes {self}")

    def capacity(self, batch: int, n: int) -> int:
        return min(INT32_MAX, batch * n * self.max_pairs_per_gaussian)

    def fields(self) -> dict[str, np.ndarray]:
        """Attribute name -> value array (INT32 or FLOAT32), as TensorRT plugin fields and ONNX attributes."""
        return {
            "height": np.array([self.height], np.int32),
            "width": np.array([self.width], np.int32),
            "tile_size": np.array([self.tile_size], np.int32),
            "background": np.array(self.background, np.float32),
            "lowpass": np.array([self.lowpass], np.float32),
            "max_pairs_per_gaussian": np.array([self.max_pairs_per_gaussian], np.int32),
        }

    @staticmethod
    def from_fields(values: dict[str, np.ndarray]) -> "RasterAttributes":
        def scalar(name, default=None):
            return int(np.asarray(values[name]).reshape(-1)[0]) if name in values else default

        bg = values.get("background")
        return RasterAttributes(
            height=scalar("height"), width=scalar("width"),
            background=tuple(float(v) for v in np.asarray(bg).reshape(3)) if bg is not None else (0.5, 0.5, 0.5),
            lowpass=float(np.asarray(values["lowpass"]).reshape(-1)[0]) if "lowpass" in values else LOWPASS,
            tile_size=scalar("tile_size", TILE),
            max_pairs_per_gaussian=scalar("max_pairs_per_gaussian", DEFAULT_MAX_PAIRS_PER_GAUSSIAN))


def import_tensorrt():
    """The TensorRT Python bindings: ``tensorrt``, else TensorRT-RTX's ``tensorrt_rtx_bindings``."""
    for name in ("tensorrt", "tensorrt_rtx_bindings", "tensorrt_rtx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("TensorRT Python bindings not found (pip packages tensorrt or tensorrt-rtx)")


@functools.cache
def raster_kernels():
    """The compiled kernels, shared by all plugin instances of the process (compiled on first use)."""
    from engine.plugins.raster_launcher import RasterKernels

    return RasterKernels()


@functools.cache
def plugin_classes(trt):
    """``(OrthoRasterizerPlugin, OrthoRasterizerCreator)`` for the bindings module ``trt``."""
    from engine.plugins.raster_launcher import Workspace

    def dims_of(desc) -> tuple[int, ...]:
        return tuple(int(d) for d in desc.dims)

    class OrthoRasterizerPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self, attributes: RasterAttributes, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.num_outputs = len(OUTPUTS)
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.timing_cache_id = ""
            self.attributes = attributes
            self.phase = phase

        def get_capability_interface(self, type):
            return self

        def get_output_data_types(self, input_types):
            return [trt.DataType.FLOAT] * len(OUTPUTS)

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            a, const = self.attributes, expr_builder.constant
            batch = inputs[0][0]
            return [trt.DimsExprs([batch, const(c), const(a.height), const(a.width)]) for c in (3, 1, 1)]

        def get_fields_to_serialize(self):
            types = {np.dtype(np.int32): trt.PluginFieldType.INT32, np.dtype(np.float32): trt.PluginFieldType.FLOAT32}
            return trt.PluginFieldCollection([trt.PluginField(name, value, types[value.dtype])
                                              for name, value in self.attributes.fields().items()])

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            return desc.format == trt.TensorFormat.LINEAR and desc.type == trt.DataType.FLOAT

        def configure_plugin(self, inp, out):
            pass

        def on_shape_change(self, inp, out):
            pass

        def get_workspace_size(self, inputs, outputs):
            batch, n = (int(d) for d in tuple(inputs[0].max)[:2])
            a = self.attributes
            return Workspace.layout(batch, n, a.height, a.width, a.capacity(batch, n)).nbytes

        def get_valid_tactics(self):
            return []

        def set_tactic(self, tactic):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            batch, n = dims_of(input_desc[0])[:2]
            a = self.attributes
            ws = Workspace.layout(batch, n, a.height, a.width, a.capacity(batch, n))
            raster_kernels().enqueue(*(int(p) for p in inputs), *(int(p) for p in outputs), int(workspace), ws,
                                     batch, n, a.height, a.width, a.background, int(stream), a.lowpass)

        def clone(self):
            other = OrthoRasterizerPlugin(self.attributes, self.phase)
            other.__dict__.update(self.__dict__)
            return other

    class OrthoRasterizerCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_version = PLUGIN_VERSION
            types = {np.dtype(np.int32): trt.PluginFieldType.INT32, np.dtype(np.float32): trt.PluginFieldType.FLOAT32}
            example = RasterAttributes(1, 1).fields()
            self.field_names = trt.PluginFieldCollection([trt.PluginField(name, np.array([], value.dtype),
                                                                          types[value.dtype])
                                                          for name, value in example.items()])

        def create_plugin(self, name, fc, phase):
            return OrthoRasterizerPlugin(RasterAttributes.from_fields({f.name: np.asarray(f.data) for f in fc}), phase)

    return OrthoRasterizerPlugin, OrthoRasterizerCreator


def register_plugin(trt=None):
    """Register the creator with TensorRT's plugin registry (idempotent); returns the creator."""
    trt = trt or import_tensorrt()
    registry = trt.get_plugin_registry()
    existing = registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if existing is not None:
        return existing
    creator = plugin_classes(trt)[1]()
    registry.register_creator(creator, PLUGIN_NAMESPACE)
    _REGISTERED.append(creator)
    return creator

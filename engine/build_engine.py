"""TensorRT engine builder for the exported graphs (``engine/export_onnx.py``), with stale-engine detection.

Each engine is named by configuration, graph, precision, GPU and TensorRT version, e.g.
``tiny.decoder.fp16.nvidia-h100-80gb-hbm3-sm90.trt10.13.0.engine``, and has a JSON sidecar (same name, ``.json``)
recording the ONNX sha256, the TensorRT version, the GPU and the precision the engine was built at: ``fp16`` asked of
bindings without an FP16 builder flag (TensorRT-RTX is strongly typed) builds at the exported graphs' ``fp32``, and
the name and sidecar say ``fp32``. :func:`check_engine` refuses an engine whose sidecar does not match (re-exported
ONNX, other TensorRT, other GPU) with a message that says what differs and how to rebuild.
``<config>.engines.json`` lists the engines for :class:`engine.trt_backend.TensorRTBackend`, with the export
manifest's path relative to the listing's folder; a build of some ``parts`` keeps the engines the listing has of the
other graphs when it is of the same manifest and model configuration.

``--precision`` is that of the encoder and decoder engines; the state/render graph (``Gaussians.at(t)``, whose
position and time arithmetic half precision would spoil, then the rasterizer node) is always built at fp32. The GPU
in the names is :func:`gpu_tag` of device 0, as the backend reads it, unless ``--gpu`` names the target GPU.
The rasterizer node of ``<config>.render.onnx`` is served by the Python plugin (registered here unless
``--no-python-plugin``) or by a compiled plugin library (``--plugin-lib``). INT8/FP8 are not offered yet.

    python -m engine.build_engine build/onnx/tiny.manifest.json --precision fp16 --workspace-gb 4
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from pathlib import Path

PRECISIONS = ("fp32", "fp16")
#: the state/render graph's precision whatever is asked: ``Gaussians.at(t)`` moves positions by velocity x time and
#: fades opacities with time, arithmetic that half precision rounds visibly
STATE_PRECISION = "fp32"


class StaleEngineError(RuntimeError):
    """An engine file does not match its ONNX graph, the TensorRT version or the GPU."""


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def gpu_tag(device: int = 0) -> str:
    """``<name>-sm<major><minor>`` of a CUDA device, lower case, e.g. ``nvidia-h100-80gb-hbm3-sm90``: the name and
    compute capability pycuda's driver reports (what :class:`engine.trt_backend.TensorRTBackend` compares), torch's
    where pycuda is not installed (a build machine without it). ``RuntimeError`` when no CUDA device is seen."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device (pycuda is not installed and torch sees none)") from None
        name, (major, minor) = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
    else:
        try:
            cuda.init()
            gpu = cuda.Device(device)
            name, (major, minor) = gpu.name(), gpu.compute_capability()
        except cuda.Error as error:
            raise RuntimeError(f"no CUDA device {device}: {error}") from error
    return f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-sm{major}{minor}"


def target_gpu(gpu: str | None) -> str:
    """The GPU tag engines are built for: ``gpu`` if given, else :func:`gpu_tag` of device 0 (``RuntimeError``
    naming ``--gpu`` without a CUDA device)."""
    if gpu:
        return gpu
    try:
        return gpu_tag()
    except RuntimeError as error:
        raise RuntimeError(f"{error}: name the GPU the engines are for with --gpu <tag> (python -m "
                           f"engine.build_engine; gpu=<tag> in Python), the tag gpu_tag() reads on that GPU, e.g. "
                           f"nvidia-h100-80gb-hbm3-sm90") from error


def engine_path(out_dir: str | Path, config: str, part: str, precision: str, gpu: str, trt_version: str) -> Path:
    return Path(out_dir) / f"{config}.{part}.{precision}.{gpu}.trt{trt_version}.engine"


def sidecar_path(engine: str | Path) -> Path:
    return Path(engine).with_suffix(".json")


def check_engine(engine: str | Path, onnx_path: str | Path | None, trt_version: str, gpu: str) -> dict:
    """The sidecar of ``engine`` if it matches; otherwise :class:`StaleEngineError` listing every mismatch."""
    engine = Path(engine)
    side = sidecar_path(engine)
    if not engine.is_file() or not side.is_file():
        raise StaleEngineError(f"{engine}: engine or its sidecar {side.name} is missing; build it with "
                               f"python -m engine.build_engine")
    meta = json.loads(side.read_text())
    wanted = {"trt_version": trt_version, "gpu": gpu}
    if onnx_path is not None:
        wanted["onnx_sha256"] = sha256(onnx_path)
    problems = [f"{key}: engine built for {meta.get(key)!r}, now {value!r}"
                for key, value in wanted.items() if meta.get(key) != value]
    if problems:
        hint = (" on this GPU, or with --gpu set to this GPU's tag (engine.build_engine.gpu_tag(), "
                "<name>-sm<major><minor>)" if meta.get("gpu") != gpu else "")
        raise StaleEngineError(f"{engine.name} is stale ({'; '.join(problems)}). Rebuild it: "
                               f"python -m engine.build_engine <manifest>{hint} (engines are not portable across "
                               f"TensorRT versions or GPUs)")
    return meta


def precision_used(trt, precision: str) -> str:
    """The precision an engine asked for at ``precision`` is built at with the bindings ``trt``: ``fp32`` (the
    exported graphs' type) for ``fp16`` where they have no FP16 builder flag, else ``precision``."""
    return "fp32" if precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16") else precision


def build(onnx_path: str | Path, engine: str | Path, precision: str = "fp16", workspace_gb: float = 4.0,
          timing_cache: str | Path | None = None, plugin_libs: tuple[str, ...] = (), python_plugin: bool = True,
          gpu: str | None = None, trt=None) -> dict:
    """Parse ``onnx_path``, build a serialized engine into ``engine`` and write its sidecar; returns the sidecar,
    whose ``precision`` is :func:`precision_used` (name ``engine`` after it)."""
    from engine.plugins.ortho_raster_plugin import import_tensorrt, register_plugin

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    trt = trt or import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    registry = trt.get_plugin_registry()
    for lib in plugin_libs:
        registry.load_library(str(lib))
    if python_plugin:
        register_plugin(trt)

    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"ONNX parse of {onnx_path} failed:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    notes = []
    used = precision_used(trt, precision)
    if used == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp16":  # TensorRT-RTX: strongly typed, precision follows the ONNX tensor types
        notes.append("fp16 asked; no FP16 builder flag in these bindings (strongly typed): built at the ONNX "
                     "precision, fp32")
    cache = None
    if timing_cache is not None and hasattr(config, "create_timing_cache"):
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}")
    seconds = time.perf_counter() - start
    engine = Path(engine)
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(bytes(serialized))
    if cache is not None:
        Path(timing_cache).write_bytes(bytes(cache.serialize()))
    meta = {"onnx": Path(onnx_path).name, "onnx_sha256": sha256(onnx_path), "trt_version": trt.__version__,
            "trt_module": trt.__name__, "gpu": target_gpu(gpu), "precision": used,
            "workspace_gb": workspace_gb, "build_seconds": round(seconds, 3), "engine_bytes": engine.stat().st_size,
            "network_layers": network.num_layers, "notes": notes}
    sidecar_path(engine).write_text(json.dumps(meta, indent=1))
    return meta


def listing_manifest(listing_path: str | Path, listing: dict) -> Path:
    """The export manifest an engine listing names: its ``manifest`` entry resolved against the listing's folder
    (an absolute path, as older listings store, is taken as it is)."""
    return Path(listing_path).parent / listing["manifest"]


def previous_engines(listing_path: Path, manifest_path: Path, manifest: dict, gpu: str, trt_version: str) -> dict:
    """The engines listed at ``listing_path`` when that listing is of ``manifest_path``, its model configuration,
    ``gpu`` and ``trt_version``, those of graphs the manifest still lists under the same file; otherwise (or without
    a listing) none: one listing never mixes engines of two GPUs or TensorRT versions."""
    if not listing_path.is_file():
        return {}
    listing = json.loads(listing_path.read_text())
    same_build = (listing.get("gpu"), listing.get("trt_version")) == (gpu, trt_version)
    if (listing["config"] != manifest["config"] or not same_build
            or listing_manifest(listing_path, listing).resolve() != manifest_path.resolve()):
        return {}
    graphs = manifest["graphs"]
    return {part: info for part, info in listing["engines"].items()
            if graphs.get(part, {}).get("file") == info["onnx"]}


def build_all(manifest_path: str | Path, out_dir: str | Path | None = None, parts: tuple[str, ...] | None = None,
              **options) -> Path:
    """Build the engines of the graphs ``parts`` (default all) of an export manifest, the encoder and decoder at
    ``precision`` (default fp16), the state/render graph at fp32 (:data:`STATE_PRECISION`); writes and returns
    ``<config>.engines.json``, which keeps the engines it lists of other parts (:func:`previous_engines`)."""
    from engine.plugins.ortho_raster_plugin import import_tensorrt

    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    out_dir = Path(out_dir or manifest_path.parent)
    trt = options.pop("trt", None) or import_tensorrt()
    gpu = target_gpu(options.pop("gpu", None))
    asked = options.pop("precision", "fp16")
    config = manifest["config"]["name"]
    path = out_dir / f"{config}.engines.json"
    relative = Path(os.path.relpath(manifest_path.resolve(), out_dir.resolve())).as_posix()
    listing = {"manifest": relative, "config": manifest["config"], "gpu": gpu, "trt_version": trt.__version__,
               "engines": previous_engines(path, manifest_path, manifest, gpu, trt.__version__)}
    for part, graph in manifest["graphs"].items():
        if parts and part not in parts:
            continue
        precision = STATE_PRECISION if part == "state" else asked
        engine = engine_path(out_dir, config, "render" if graph["custom_node"] else part,
                             precision_used(trt, precision), gpu, trt.__version__)
        meta = build(manifest_path.parent / graph["file"], engine, precision, gpu=gpu, trt=trt, **options)
        kept = {k: meta[k] for k in ("precision", "build_seconds", "engine_bytes", "network_layers", "notes")}
        listing["engines"][part] = {"file": engine.name, "onnx": graph["file"], "custom_node": graph["custom_node"],
                                    **kept}
        print(f"{part}: {engine.name} ({meta['engine_bytes']} bytes, {meta['build_seconds']} s)")
    path.write_text(json.dumps(listing, indent=1))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", help="<config>.manifest.json written by engine.export_onnx")
    p.add_argument("--out", help="engine folder (default: next to the manifest)")
    p.add_argument("--parts", nargs="*", help="graphs to build (encoder decoder state; the listing keeps the others "
                                              "it has of this manifest); default all")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="encoder and decoder precision (default fp16); the state/render graph is always built at "
                        "fp32 (Gaussians.at(t)'s position and time arithmetic)")
    p.add_argument("--workspace-gb", type=float, default=4.0)
    p.add_argument("--timing-cache", help="timing cache file (read if present, written after the build)")
    p.add_argument("--plugin-lib", action="append", default=[], help="compiled plugin library to load")
    p.add_argument("--no-python-plugin", action="store_true", help="do not register the Python rasterizer plugin")
    p.add_argument("--gpu", help="tag of the GPU the engines are for, <name>-sm<major><minor> as "
                                 "engine.build_engine.gpu_tag() reads it there, e.g. nvidia-h100-80gb-hbm3-sm90 "
                                 "(default: this machine's device 0); the backend refuses engines of another tag")
    args = p.parse_args(argv)
    path = build_all(args.manifest, args.out, tuple(args.parts) if args.parts else None, precision=args.precision,
                     workspace_gb=args.workspace_gb, timing_cache=args.timing_cache,
                     plugin_libs=tuple(args.plugin_lib), python_plugin=not args.no_python_plugin, gpu=args.gpu)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Ahead-of-time check with TensorRT-RTX: parse + build every exported graph, then report what loading gives.

TensorRT-RTX builds engines for other GPUs than the one it runs on (on Hopper it builds but cannot deserialize), so
this checks the ONNX parse and the engine build of the encoder / decoder / state graphs, which is as far as this
machine can go without the full TensorRT. A graph with the ``nut_ros::OrthoRasterizer`` node is parsed in a child
process, because TensorRT-RTX's parser aborts the process on custom-domain nodes.

    python test/bench/rtx_check.py build/onnx/tiny build/onnx/small --out rtx_check.json
    python test/bench/rtx_check.py build/onnx/tiny build/onnx/small --gpu rtx-aot   # CPU-only host (AOT build)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from engine.build_engine import build_all, target_gpu


def parse_custom_node_graph(onnx_path: Path) -> dict:
    """Parse a graph with the rasterizer node (plugin registered) in a child process; its exit status and output."""
    code = ("import sys; from engine.plugins.ortho_raster_plugin import import_tensorrt, register_plugin; "
            "trt = import_tensorrt(); register_plugin(trt); log = trt.Logger(trt.Logger.WARNING); "
            "net = trt.Builder(log).create_network(0); p = trt.OnnxParser(net, log); "
            f"ok = p.parse_from_file({str(onnx_path)!r}); "
            "print('parsed', ok, [str(p.get_error(i)) for i in range(p.num_errors)])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return {"returncode": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-800:]}


def try_deserialize(engine: Path) -> str:
    from engine.plugins.ortho_raster_plugin import import_tensorrt

    trt = import_tensorrt()

    class Capture(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            self.messages.append(msg)

    logger = Capture()
    engine_obj = trt.Runtime(logger).deserialize_cuda_engine(engine.read_bytes())
    return "deserialized" if engine_obj is not None else " | ".join(logger.messages)[-600:]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exports", nargs="+", help="folders written by engine.export_onnx")
    p.add_argument("--engines", default="/tmp/nut_ros_engines")
    p.add_argument("--out", default="rtx_check.json")
    p.add_argument("--gpu", default=None, help="target name in the engine file names (default: this machine's GPU; "
                                               "TensorRT-RTX builds without one, e.g. --gpu rtx-aot on a CPU host)")
    args = p.parse_args(argv)
    from engine.plugins.ortho_raster_plugin import import_tensorrt

    trt = import_tensorrt()
    gpu = target_gpu(args.gpu)
    report = {"trt_module": trt.__name__, "trt_version": trt.__version__, "gpu": gpu, "exports": {}}
    for folder in map(Path, args.exports):
        (manifest,) = folder.glob("*.manifest.json")
        graphs = json.loads(manifest.read_text())["graphs"]
        entry = {"custom_node_parse": {}}
        plain = tuple(part for part, g in graphs.items() if not g["custom_node"])
        if plain:
            listing = json.loads(build_all(manifest, args.engines, plain, precision="fp16", workspace_gb=8,
                                           timing_cache=Path(args.engines) / "timing.cache", gpu=gpu).read_text())
            entry["engines"] = listing["engines"]
            first = next(iter(listing["engines"].values()))["file"]
            entry["deserialize_here"] = try_deserialize(Path(args.engines) / first)
        for part, g in graphs.items():
            if g["custom_node"]:
                entry["custom_node_parse"][part] = parse_custom_node_graph(folder / g["file"])
        report["exports"][folder.name] = entry
        print(json.dumps({folder.name: entry}, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

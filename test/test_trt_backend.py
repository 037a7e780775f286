"""The TensorRT backend (``engine/trt_backend.py``) built and run end to end on the CPU with stand-ins for pycuda and
TensorRT that record what they are asked (neither is installed here, and torch sees no CUDA device): the GPU tag read
with pycuda, encoder inputs fed by name, the render engine's float32 background, one folder holding several
configurations' listings, and pycuda's memory and streams created and freed with the context current whichever thread
drops them. The stand-in ONNX files are JSON lists of a graph's tensors, which the stand-in builder serializes as the
"engine" and the stand-in runtime reads back."""
import gc
import json
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from engine.build_engine import build_all
from nut_ros.core.config import get_config
from nut_ros.core.gaussians import Gaussians

GPU_NAME, CAPABILITY = "NVIDIA H100 80GB HBM3", (9, 0)
GPU = "nvidia-h100-80gb-hbm3-sm90"
SIZE = (48, 96)
N = 32  # Gaussians per frame of the stand-in graphs
WIDTHS = {"xyz": 3, "velocity": 3, "rgb": 3, "opacity": 1, "scale": 2, "gamma": 2}
BACKGROUND = [float(np.float32(0.1))] * 3  # as export_onnx writes the plugin attribute: float32 values as floats


class Recorder:
    """The stand-in pycuda's state: the depth of pushed contexts per thread, and ``events``: ``(what, kind, context
    current, thread)`` for every allocation and free."""

    def __init__(self):
        self.local = threading.local()
        self.events = []

    def depth(self) -> int:
        return getattr(self.local, "depth", 0)

    def note(self, what: str, kind: str) -> None:
        self.events.append((what, kind, self.depth() > 0, threading.current_thread().name))


def fake_pycuda(rec: Recorder) -> dict[str, ModuleType]:
    """``pycuda``, ``pycuda.driver`` and ``pycuda.autoprimaryctx`` as the backend calls them. Device allocations
    keep the last array copied in (``value``)."""

    class Allocation:
        def __init__(self, nbytes):
            self.nbytes, self.value, self.freed = nbytes, None, False
            rec.note("alloc", "device")

        def free(self):
            assert not self.freed, "freed twice"
            self.freed = True
            rec.note("free", "device")

        def __int__(self):
            return id(self)

    class Pinned(bytearray):
        def free(self):
            rec.note("free", "host")

    def pagelocked_empty(shape, dtype):
        rec.note("alloc", "host")
        return np.ndarray(shape, dtype, buffer=Pinned(np.dtype(dtype).itemsize * int(np.prod(shape))))

    class Stream:
        handle = 0

        def __init__(self):
            rec.note("alloc", "stream")

        def synchronize(self):
            pass

        def __del__(self):  # pycuda destroys a stream in its destructor only
            rec.note("free", "stream")

    def memcpy_htod_async(dest, src, stream):
        dest.value = np.array(src)

    def memcpy_dtoh_async(dest, src, stream):
        if src.value is not None:
            dest[...] = src.value.reshape(dest.shape)

    class Context:
        @staticmethod
        def pop():
            rec.local.depth = rec.depth() - 1

    class Device:
        def __init__(self, index):
            assert index == 0

        def name(self):
            return GPU_NAME

        def compute_capability(self):
            return CAPABILITY

    driver = ModuleType("pycuda.driver")
    driver.__dict__.update(init=lambda: None, Error=type("Error", (Exception,), {}), Device=Device, Context=Context,
                           Stream=Stream, mem_alloc=Allocation, pagelocked_empty=pagelocked_empty,
                           memcpy_htod_async=memcpy_htod_async, memcpy_dtoh_async=memcpy_dtoh_async)
    primary = ModuleType("pycuda.autoprimaryctx")
    primary.context = SimpleNamespace(push=lambda: setattr(rec.local, "depth", rec.depth() + 1))
    pycuda = ModuleType("pycuda")
    pycuda.driver, pycuda.autoprimaryctx = driver, primary
    return {"pycuda": pycuda, "pycuda.driver": driver, "pycuda.autoprimaryctx": primary}


class FakeEngine:
    """A deserialized engine: the tensors of its stand-in ONNX file, all float32; its executions are appended to
    ``runs``."""

    def __init__(self, spec: dict, contexts: bool, runs: list):
        self.spec, self.contexts, self.runs = spec, contexts, runs
        self.names = [*spec["inputs"], *spec["outputs"]]
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name in self.spec["inputs"] else "OUTPUT"

    def get_tensor_dtype(self, name):
        return "FLOAT"

    def get_tensor_shape(self, name):
        return tuple({**self.spec["inputs"], **self.spec["outputs"]}[name])

    def create_execution_context(self):
        if not self.contexts:
            return None
        return SimpleNamespace(set_tensor_address=lambda name, ptr: None,
                               execute_async_v3=lambda handle: self.runs.append(self.names) or True)


def fake_tensorrt(contexts: bool = True) -> ModuleType:
    """The TensorRT 10 builder, parser and runtime calls of ``build_engine`` and ``trt_backend``; ``contexts=False``:
    ``create_execution_context`` returns None, as TensorRT does when it cannot allocate one. ``trt.runs`` records
    the engines' executions."""
    trt = ModuleType("tensorrt")
    trt.__version__, trt.runs = "10.13.0", []
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.get_plugin_registry = lambda: SimpleNamespace(load_library=lambda path: None)
    trt.BuilderFlag = SimpleNamespace(FP16="FP16")
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.DataType = SimpleNamespace(FLOAT="FLOAT")
    config = SimpleNamespace(set_memory_pool_limit=lambda pool, size: None, set_flag=lambda flag: None)
    trt.Builder = lambda logger: SimpleNamespace(
        create_network=lambda flags: SimpleNamespace(num_layers=1), create_builder_config=lambda: config,
        build_serialized_network=lambda network, cfg: json.dumps(network.spec).encode())
    trt.OnnxParser = lambda network, logger: SimpleNamespace(
        parse_from_file=lambda path: setattr(network, "spec", json.loads(Path(path).read_text())) or True)
    trt.Runtime = lambda logger: SimpleNamespace(
        deserialize_cuda_engine=lambda blob: FakeEngine(json.loads(blob), contexts, trt.runs))
    return trt


def write_export(folder: Path, name: str = "tiny", render: bool = False,
                 encoder_inputs: tuple[str, ...] = ("input_disp", "input_rgb")) -> Path:
    """An export manifest and stand-in graphs of configuration ``name`` at :data:`SIZE`; the encoder's inputs in the
    order ``encoder_inputs`` (TensorRT keeps no order of its own that the backend may rely on); ``render``: a state
    graph with the rasterizer node, built with :data:`BACKGROUND`."""
    h, w = SIZE
    cache = {"xyz": [1, N, 3], "rgb": [1, N, 3], "opacity": [1, N, 1], "scale": [1, N, 2]}
    shapes = {"input_rgb": [1, 3, h, w], "input_disp": [1, 2, h, w], "image": [1, 3, h, w], "disparity": [1, 2, h, w]}
    gaussians = {f: [1, 2 * N, k] for f, k in WIDTHS.items()} | {"t0": [1, 2 * N]}
    specs = {"encoder": ({n: shapes[n] for n in encoder_inputs}, cache),
             "decoder": ({f"{side}_{n}": s for side in ("prev", "cur") for n, s in cache.items()}, gaussians),
             "state": ({f"g_{n}": s for n, s in gaussians.items()} | {"t": [1]},
                       {"rgb": [1, 3, h, w], "depth": [1, 1, h, w], "alpha": [1, 1, h, w]})}
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for part, (inputs, outputs) in specs.items():
        if part == "state" and not render:
            continue
        file = f"{name}.{'render' if part == 'state' else part}.onnx"
        (folder / file).write_text(json.dumps({"inputs": inputs, "outputs": outputs}))
        graphs[part] = {"file": file, "custom_node": part == "state"}
    manifest = folder / f"{name}.manifest.json"
    manifest.write_text(json.dumps({"config": get_config(name, image_size=SIZE).to_dict(), "batch": 1,
                                    "raster_attributes": {"background": BACKGROUND}, "graphs": graphs}))
    return manifest


@pytest.fixture
def gpu(monkeypatch):
    """pycuda and TensorRT stand-ins in place (``trt_backend`` compiles no kernels: ``kernels.backgrounds`` records
    the backgrounds it is launched with) until the test's backends are gone (collected while the stand-ins are
    there: their finalizers push the stand-in context)."""
    from engine import trt_backend

    rec = Recorder()
    for name, module in fake_pycuda(rec).items():
        monkeypatch.setitem(sys.modules, name, module)
    trt = fake_tensorrt()
    kernels = SimpleNamespace(backgrounds=[], pairs=lambda workspace, ws, stream: 0)
    kernels.enqueue = lambda *args: kernels.backgrounds.append(args[14])
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_backend, "register_plugin", lambda trt: None)
    monkeypatch.setattr(trt_backend, "raster_kernels", lambda: kernels)
    yield SimpleNamespace(rec=rec, trt=trt, kernels=kernels)
    gc.collect()  # e.g. a backend refused halfway, still referenced by the traceback of what refused it


def build(gpu, tmp_path, name="tiny", **export) -> Path:
    """Export ``name`` into ``tmp_path/onnx`` and build its engines into ``tmp_path/engines`` (the GPU tag: the
    builder's default, this 'machine's' device 0)."""
    build_all(write_export(tmp_path / "onnx", name, **export), tmp_path / "engines", trt=gpu.trt, python_plugin=False)
    return tmp_path / "engines"


def gaussians(n: int) -> Gaussians:
    g = torch.Generator().manual_seed(n)
    return Gaussians(**{f: torch.rand(1, n, k, generator=g) for f, k in WIDTHS.items()}, t0=torch.zeros(1, n))


def test_the_gpu_tag_is_read_with_pycuda_by_builder_and_backend(gpu, tmp_path):
    from engine.build_engine import StaleEngineError
    from engine.trt_backend import TensorRTBackend

    assert not torch.cuda.is_available()  # torch is no help here: the tag must come from pycuda
    engines = build(gpu, tmp_path)
    assert json.loads((engines / "tiny.engines.json").read_text())["gpu"] == GPU
    assert TensorRTBackend(engines).model_config.name == "tiny"
    build_all(tmp_path / "onnx" / "tiny.manifest.json", engines, trt=gpu.trt, python_plugin=False, gpu="h100")
    with pytest.raises(StaleEngineError, match=f"built for 'h100', now '{GPU}'.*--gpu set to this GPU's tag"):
        TensorRTBackend(engines)


def test_encoder_inputs_are_fed_by_name(gpu, tmp_path):
    from engine.trt_backend import TensorRTBackend

    backend = TensorRTBackend(build(gpu, tmp_path))  # the engine lists input_disp first
    rgb, disp = torch.rand(1, 3, *SIZE), torch.rand(1, 2, *SIZE)
    backend.encode(rgb, disp)
    device = backend.engines["encoder"].buffers.device
    assert np.array_equal(device["input_rgb"].value, rgb.numpy())
    assert np.array_equal(device["input_disp"].value, disp.numpy())
    build(gpu, tmp_path / "old", encoder_inputs=("image", "disparity"))  # not the names the export gives them
    with pytest.raises(ValueError, match=r"inputs are \['image', 'disparity'\].*input_rgb.*engine.export_onnx"):
        TensorRTBackend(tmp_path / "old" / "engines")


def test_the_render_engine_takes_its_background_as_float32_and_leaves_others_to_the_kernels(gpu, tmp_path):
    from engine.trt_backend import TensorRTBackend

    backend = TensorRTBackend(build(gpu, tmp_path, render=True))
    pair = gaussians(2 * N)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = backend.render(pair, 0.5, (0.1, 0.1, 0.1))  # the engine's (float32) background, given as floats
    assert len(gpu.trt.runs) == 1 and gpu.kernels.backgrounds == [] and out.color.shape == (1, 3, *SIZE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            backend.render(pair, 0.5, (0.0, 0.0, 0.0))
    assert len(gpu.trt.runs) == 1 and gpu.kernels.backgrounds == [(0.0, 0.0, 0.0)] * 2
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == [
        "the render engine was built with background [0.1 0.1 0.1]; renders with another background ([0.0, 0.0, "
        "0.0] here) run the rasterizer kernels directly (warned once)"]


def test_a_folder_of_several_configurations_gives_the_model_asked_for(gpu, tmp_path):
    from engine.trt_backend import TensorRTBackend
    from nut_ros.pipeline.backends import make_backend

    for name in ("tiny", "small"):  # the builder's default folders are shared by configurations
        engines = build(gpu, tmp_path, name)
    assert sorted(p.name for p in engines.glob("*.engines.json")) == ["small.engines.json", "tiny.engines.json"]
    backend = make_backend("tensorrt", "small", checkpoint=engines, device="cuda")
    assert backend.model_config.name == "small"
    with pytest.raises(FileNotFoundError, match="small.engines.json, tiny.engines.json and no model configuration"):
        TensorRTBackend(engines)
    with pytest.raises(FileNotFoundError, match="none is streamsplat.engines.json"):
        TensorRTBackend(engines, model="streamsplat")


def test_pycuda_memory_and_streams_are_made_and_freed_in_the_context_on_any_thread(gpu, tmp_path):
    """The backend is created on one thread and dropped on another (the node's worker), neither of which has the
    context current; every allocation, the renderer's workspace and the streams included, is made and freed inside
    it, once."""
    from engine.trt_backend import TensorRTBackend

    engines = build(gpu, tmp_path, render=True)
    held = []

    def create_and_run():
        backend = TensorRTBackend(engines)
        frames = [backend.encode(torch.rand(1, 3, *SIZE), torch.rand(1, 2, *SIZE)) for _ in range(2)]
        backend.render(backend.static(frames[0]), 1.0)  # a first frame alone: the renderer's buffers and workspace
        backend.render(backend.decode(*frames), 0.5, BACKGROUND)  # a pair: the render engine
        held.extend([backend, frames])

    for target, name in ((create_and_run, "creator"), (held.clear, "worker")):
        thread = threading.Thread(target=target, name=name)
        thread.start()
        thread.join()
    assert gpu.rec.depth() == 0 and len(held) == 0
    made = [e for e in gpu.rec.events if e[0] == "alloc"]
    freed = [e for e in gpu.rec.events if e[0] == "free"]
    assert {kind for _, kind, _, _ in made} == {"device", "host", "stream"}
    assert all(current for _, _, current, _ in made), [e for e in made if not e[2]]
    assert sorted(kind for _, kind, _, _ in freed) == sorted(kind for _, kind, _, _ in made)
    assert {(current, thread) for _, _, current, thread in freed} == {(True, "worker")}
    assert sum(kind == "stream" for _, kind, _, _ in made) == 1  # the renderer's is the backend's


def test_an_engine_without_an_execution_context_is_refused(gpu, tmp_path, monkeypatch):
    from engine import trt_backend

    engines = build(gpu, tmp_path)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake_tensorrt(contexts=False))
    with pytest.raises(RuntimeError, match="could not create an execution context for tiny.encoder"):
        trt_backend.TensorRTBackend(engines)

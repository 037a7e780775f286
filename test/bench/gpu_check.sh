#!/bin/bash
# GPU verification on a lent GPU machine (docs/DEPLOYMENT.md says what each stage proves). Run from the repository
# root as `bash test/bench/gpu_check.sh STAGE`; scratch files go to $WORK (default /tmp/nut_ros_gpu):
#   stage1  carry .whl (gsplat, pycuda sdist + deps) and .device_carry/trtA: builds pycuda, gsplat's and our CUDA
#           extension in parallel, exports ONNX graphs, runs `pytest -m gpu` and test/bench/bench_rasterizers.py
#   stage2  carry .device_carry/trtB, right after stage1 (the machine must still be warm): installs TensorRT-RTX,
#           builds engines from the exported graphs (test/bench/rtx_check.py) and runs the plugin's enqueue test
#   verify  carry .whl: rebuilds pycuda and the extension, reruns `pytest -m gpu` and two kernel tests under
#           compute-sanitizer memcheck
# Logs and JSON results go to $OUT.
set -u
OUT=${OUT:-/tmp/nut_ros_gpu_out}
WORK=${WORK:-/tmp/nut_ros_gpu}
mkdir -p "$OUT" "$WORK"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
export CUDA_ROOT=$CUDA_HOME PATH=$CUDA_HOME/bin:$PATH PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
export PYTHONPATH=$WORK/trt:$WORK/site:$PWD:$PWD/test/bench
ONNX=$WORK/onnx

stage1() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
  mkdir -p "$WORK/trtparts" && cp .device_carry/trtA/* "$WORK/trtparts/"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl || exit 1
  local t0=$SECONDS
  (python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$WORK/site" .whl/pycuda-*.tar.gz
   echo "pycuda rc=$? after $((SECONDS - t0)) s") > "$OUT/build.log" 2>&1 &
  (MAX_JOBS=8 python3 -c "
import torch, gsplat
from bench_rasterizers import gsplat_render
from scenes import grid_scene
gsplat_render(grid_scene(1000, 64, 64), 64, 64)
print('gsplat ok')"; echo "gsplat rc=$? after $((SECONDS - t0)) s") > "$OUT/build_gsplat.log" 2>&1 &
  (python3 -c "from nut_ros.render._cuda import extension; extension(); print('extension ok')"
   echo "extension rc=$? after $((SECONDS - t0)) s") > "$OUT/build_ext.log" 2>&1 &
  (for cfg in tiny small; do
     python3 -m engine.export_onnx --config "$cfg" --random-init --no-rasterizer --out "$ONNX/$cfg" \
       $([ "$cfg" = tiny ] && echo --verify) 2>&1 | grep -v -i warn
   done
   python3 -m engine.export_onnx --config tiny --random-init --out "$ONNX/tiny_node" --parts state 2>&1 |
     grep -v -i warn
   echo "export done after $((SECONDS - t0)) s") > "$OUT/export.log" 2>&1 &
  wait
  tail -n 3 "$OUT"/build*.log
  python3 -m pytest -q -m gpu test/ -p no:cacheprovider 2>&1 | tail -n 25 | tee "$OUT/pytest_gpu.log"
  python3 test/bench/bench_rasterizers.py --out "$OUT/bench_rasterizers.json" 2>&1 | grep -v -i warn |
    tee "$OUT/bench_rasterizers.log"
  cat "$OUT/export.log"
}

stage2() {
  mkdir -p "$WORK/trt/tensorrt_rtx_libs"
  cat "$WORK/trtparts/librtx.so.xz.partaa" .device_carry/trtB/librtx.so.xz.partab |
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" \
    > "$WORK/trt/tensorrt_rtx_libs/libtensorrt_rtx.so.1" || exit 1
  (cd "$WORK/trt/tensorrt_rtx_libs" && sha256sum libtensorrt_rtx.so.1) | tee "$OUT/trt_install.log"
  cp .device_carry/trtB/__init__.py .device_carry/trtB/libtensorrt_onnxparser_rtx.so.1 "$WORK/trt/tensorrt_rtx_libs/"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/trt" .device_carry/trtB/*.whl || exit 1
  python3 test/bench/rtx_check.py "$ONNX/tiny" "$ONNX/small" "$ONNX/tiny_node" \
    --out "$OUT/rtx_check.json" 2>&1 | grep -v -i warn | tail -n 60
  python3 -m pytest -q test/test_cuda_rasterizer.py -p no:cacheprovider 2>&1 | tail -n 15 | tee "$OUT/pytest_plugin.log"
}

verify() {
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl || exit 1
  local t0=$SECONDS
  (python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$WORK/site" .whl/pycuda-*.tar.gz
   echo "pycuda rc=$? after $((SECONDS - t0)) s") > "$OUT/build.log" 2>&1 &
  (python3 -c "from nut_ros.render._cuda import extension; extension(); print('extension ok')"
   echo "extension rc=$? after $((SECONDS - t0)) s") > "$OUT/build_ext.log" 2>&1 &
  wait
  tail -n 2 "$OUT"/build*.log
  python3 -m pytest -q -m gpu test/ -p no:cacheprovider 2>&1 | tail -n 15 | tee "$OUT/pytest_gpu.log"
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 3 python3 -m pytest -q -p no:cacheprovider \
    test/test_cuda_rasterizer.py -k "oracle or launcher or constant_shapes" 2>&1 |
    grep -E "ERROR SUMMARY|passed|failed|rror" | tail -n 8 | tee "$OUT/sanitizer_memcheck.log"
  echo "memcheck exit ${PIPESTATUS[0]}" | tee -a "$OUT/sanitizer_memcheck.log"
}

"$@"

#!/usr/bin/env bash
# Measurements of the shipped weights on the lent GPU (no ROS there), written into $OUT. Run from the repo root.
#   test/bench/gpu_measure.sh bench            bench_pipeline of small and tiny with the eager network (no CUDA
#                                              graphs, bf16); the motion-prior and compile GPU tests
#   test/bench/gpu_measure.sh graphs           the CUDA-graph and rasterizer GPU tests; bench_pipeline of small and
#                                              tiny as the node runs them on CUDA (bf16, CUDA graphs, no stage
#                                              waits): as is, without depth from motion, with stage waits (per-stage
#                                              device times), and a profile
#   test/bench/gpu_measure.sh cudagraphs       the same with torch.compile in reduce-overhead mode (CUDA graphs)
#   test/bench/gpu_measure.sh clips  DATA      eval_direct clip runs of small (DATA: `eval_direct.py pack` of them)
#   test/bench/gpu_measure.sh depth  DATA      eval_direct 7-Scenes sequence runs of small
#   test/bench/gpu_measure.sh latency          the graph-cache and perception GPU tests; tiny compiled (after the
#                                              node's warm-up) and eager with torch.profiler and host cProfile
#                                              tables; small compiled (compiled vs eager per decoded field)
#   test/bench/gpu_measure.sh ab BASE          the CUDA-graph GPU tests; bench_pipeline of tiny and small as the node
#                                              runs them (CUDA graphs, then also compile) with this tree and with
#                                              BASE (an older nut_ros/ exported beside it, weights from this tree),
#                                              interleaved on one machine
#   test/bench/gpu_measure.sh frame            bench_pipeline as the node runs them (CUDA graphs): tiny compiled and
#                                              not, small compiled; the compile GPU tests; tiny compiled with one
#                                              OpenCV thread
#   test/bench/gpu_measure.sh perception [BASE [ARGS]]  perception_cost of tiny and small (obstacles + map on
#                                              the GPU host; ARGS, default `--scenes 3 --sections`: each step's host
#                                              time); with BASE (an older nut_ros/ exported beside it, weights
#                                              copied from this tree) also that tree's, interleaved on one machine
#   test/bench/gpu_measure.sh perception-compile  perception_cost of small and tiny with the dense part eager and
#                                              compiled (inside the CUDA graphs), one after the other on one
#                                              machine; the perception GPU tests; a profile of small compiled
#   test/bench/gpu_measure.sh release          one call for a release's speed numbers: bench_pipeline as the node
#                                              runs on CUDA (tiny compiled, tiny, small compiled), then
#                                              perception_cost of tiny and small compiled (each step's host time;
#                                              one processor, as the node keeps one), each within what is left of
#                                              RELEASE_S (default 570) s (skipped.txt names a run left out);
#                                              quality runs separately (clips, depth)
#   test/bench/gpu_measure.sh release-perception  only release's perception_cost runs
#   test/bench/gpu_measure.sh kernels [VARIANTS]  graph_localize.py --inference-inputs --parts encode --calls 50 of
#                                              small with a fresh Inductor cache and TORCH_LOGS=output_code: the
#                                              replays' errors and, packed, the code that Inductor generated for them;
#                                              VARIANTS of fixed (as compile_network compiles), channel-major
#                                              (--channel-major-patches: the racy kernel back) and persistent (that
#                                              and --persistent-reductions), default all three
#   test/bench/gpu_measure.sh compile-fix [LIMIT]  the compile GPU tests (the generated code scanned for the racy
#                                              kernel, every replay against the direct call),
#                                              bench_pipeline of small compiled as the node runs it, graph_localize.py
#                                              --parts encode --calls 50 of small as compiled, bench_pipeline of tiny
#                                              compiled, each with its own cap, skipped when too little of LIMIT s
#                                              (default 560) is left
#   test/bench/gpu_measure.sh upsampler-scan    check_compile.py --autocast-only --scan of both Gaussian upsamplers
#                                              compiled whole, small and streamsplat (random init): are their bf16
#                                              errors the racy kernel of compile.py again?
#   test/bench/gpu_measure.sh fit-profile       perception_cost of tiny compiled (one processor) with each step's host
#                                              time, torch's profiler table and the host's cProfile tables (where the
#                                              camera-motion fit's time goes without odometry)
#   test/bench/gpu_measure.sh fit-check [BASE...]  the fit kernel's and the perception stage's GPU tests, then
#                                              perception_cost of tiny compiled (one processor, release's command),
#                                              this tree and each BASE (an older nut_ros/ exported beside it without
#                                              weights), one after the other, within 540 s
#   test/bench/gpu_measure.sh fit-tune [BASE...]  fit_kernel_bench.py (the fit kernel's block size and warps),
#                                              then fit-check's perception_cost with the fastest of them and with
#                                              each BASE
#   test/bench/gpu_measure.sh gpu-tests [PATHS]  the tests marked gpu (of PATHS, default all)
#   test/bench/gpu_measure.sh compiled-ab BASE  bench_pipeline of tiny compiled as the node runs it, this tree and
#                                              BASE (an older nut_ros/ exported beside it without weights) in turn,
#                                              twice each, then release's perception_cost of tiny: does BASE's
#                                              compile differ in speed on one machine?
set -euo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
bench() { timeout "$1" python3 test/bench/bench_pipeline.py --device cuda --bf16 --repeat 3 "${@:2}"; }
TINY_COST="--model tiny --device cuda --scenes 3 --sections --one-processor --compile"  # release's perception command
tiny_cost() {  # fit-check's perception_cost of tree $1 ("new": this one), unless past 420 s
  [ $SECONDS -gt 420 ] && { echo "skipped: $1 (time)" >> "$OUT/skipped.txt"; return; }
  local path=$PWD; [ "$1" != new ] && { path=$PWD/$1; cp nut_ros/weights/tiny.safetensors "$1/nut_ros/weights/"; }
  PYTHONPATH=$path timeout $((540 - SECONDS)) python3 test/bench/perception_cost.py $TINY_COST \
    > "$OUT/perception_tiny_$(basename "$1")_compiled.txt" 2>&1 || true
}
case "$1" in
  bench)
    for model in small tiny; do
      bench 120 --model $model --no-cuda-graphs > "$OUT/bench_${model}_eager.json"
    done
    timeout 150 python3 -m pytest -q -m gpu test/test_motion_prior.py test/test_compile_gpu.py \
      > "$OUT/pytest_gpu.txt" 2>&1 || true ;;
  graphs)
    timeout 200 python3 -m pytest -q -m gpu test/test_cuda_graphs_gpu.py test/test_cuda_rasterizer.py \
      > "$OUT/pytest_graphs.txt" 2>&1 || true
    for model in small tiny; do
      bench 100 --model $model --profile "$OUT/profile_$model.txt" > "$OUT/bench_${model}_graphs.json"
      bench 100 --model $model --depth-from-motion off > "$OUT/bench_${model}_graphs_nodfm.json"
      bench 100 --model $model --stage-sync > "$OUT/bench_${model}_graphs_sync.json"
    done ;;
  cudagraphs)
    for model in tiny small; do
      bench 200 --model $model --compile --compile-mode reduce-overhead --warmup 10 \
        > "$OUT/bench_${model}_cudagraphs.json" || true
    done ;;
  clips)
    python3 test/bench/eval_direct.py run --shared "$2" --model small --device cuda \
      --runs cups dog blocks coffee juggle apple --out "$OUT/small_clips.json" ;;
  depth)
    python3 test/bench/eval_direct.py run --shared "$2" --model small --device cuda \
      --runs redkitchen_network redkitchen_motion redkitchen_odometry --out "$OUT/small_depth.json" ;;
  latency)
    timeout 240 python3 -m pytest -q -m gpu test/test_cuda_graphs_gpu.py test/test_perception_device.py \
      > "$OUT/pytest_latency.txt" 2>&1 || true
    bench 150 --model tiny --compile --warm-up-first --warmup 0 --profile "$OUT/profile_tiny_compiled.txt" \
      --cprofile "$OUT/cprofile_tiny_compiled.txt" > "$OUT/bench_tiny_compiled.json" || true
    bench 80 --model tiny --profile "$OUT/profile_tiny.txt" --cprofile "$OUT/cprofile_tiny.txt" \
      > "$OUT/bench_tiny.json" || true
    bench 200 --model small --compile > "$OUT/bench_small_compiled.json" || true ;;
  ab)
    BASE=$2
    timeout 120 python3 -m pytest -q -m gpu test/test_cuda_graphs_gpu.py > "$OUT/pytest_graphs.txt" 2>&1 || true
    for run in "tiny new" "tiny base" "small new" "small base" "small new -c" "small base -c" "tiny new -c" \
               "tiny base -c"; do
      set -- $run; model=$1 tree=$2 extra=""; [ "${3:-}" = -c ] && extra="--compile --no-compile-check"
      path=$PWD; [ "$tree" = base ] && path=$PWD/$BASE
      PYTHONPATH=$path bench 150 --model "$model" --checkpoint "nut_ros/weights/$model.safetensors" $extra \
        > "$OUT/ab_${model}_${tree}${extra:+_compiled}.json" || true
    done ;;
  frame)
    for run in "tiny --compile --no-compile-check" "tiny" "small --compile --no-compile-check"; do
      name=$(echo "$run" | tr -d ' -' | sed 's/nocompilecheck//')
      bench 150 --model $run > "$OUT/frame_$name.json" || true
    done
    timeout 200 python3 -m pytest -q -m gpu test/test_compile_gpu.py > "$OUT/pytest_compile.txt" 2>&1 || true
    bench 100 --model tiny --compile --no-compile-check --cv-threads 1 > "$OUT/frame_tinycompilecv1.json" || true ;;
  release|release-perception)
    # each run capped by what is left of RELEASE_S (default 570) s (a cold Inductor cache makes tiny's first compiled
    # run take 90-150 s on an H100), skipped with under 60 s left; the frame benches first, they are the headline
    capped() {  # CAP NAME CMD...: run CMD under the smaller of CAP and the time left, or note NAME as skipped
      local left=$((${RELEASE_S:-570} - SECONDS)); local cap=$(( $1 < left ? $1 : left ))
      [ $cap -lt 60 ] && { echo "skipped: $2 (time)" >> "$OUT/skipped.txt"; return; }
      timeout $cap "${@:3}" || true
    }
    if [ "$1" = release ]; then
      for run in "220 tiny --compile --no-compile-check" "100 tiny" "200 small --compile --no-compile-check"; do
        set -- $run; cap=$1; shift
        name=$(echo "$*" | tr -d ' -' | sed 's/nocompilecheck//')
        capped "$cap" "frame_$name" python3 test/bench/bench_pipeline.py --device cuda --bf16 --repeat 3 --model "$@" \
          > "$OUT/frame_$name.json"
      done
    fi
    for model in tiny small; do
      capped 150 "perception_$model" python3 test/bench/perception_cost.py --model $model --device cuda --scenes 3 \
        --compile --sections --one-processor > "$OUT/perception_${model}_compiled.txt" 2>&1
    done ;;
  kernels)  # VARIANTS (default: fixed channel-major persistent), each with a fresh Inductor cache
    for variant in $([ $# -gt 1 ] && echo "${@:2}" || echo fixed channel-major persistent); do
      [ $SECONDS -gt 400 ] && { echo "skipped: $variant (time)" >> "$OUT/skipped.txt"; continue; }
      export TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)
      case $variant in
        fixed) flag="";; channel-major) flag=--channel-major-patches;;
        persistent) flag="--channel-major-patches --persistent-reductions";;
        *) echo "unknown variant: $variant" | tee -a "$OUT/skipped.txt" >&2; continue;;
      esac
      TORCH_LOGS=output_code TORCH_LOGS_OUT="$OUT/output_code_$variant.txt" timeout 190 python3 \
        test/bench/graph_localize.py --model small --inference-inputs --parts encode --calls 50 $flag \
        > "$OUT/localize_encode_$variant.txt" 2>&1 || true
      gzip "$OUT/output_code_$variant.txt" 2>/dev/null || true  # (none when the run failed early)
      (cd "$TORCHINDUCTOR_CACHE_DIR" && find . -name "*.py" | tar czf "$OUT/inductor_kernels_$variant.tgz" -T -)
    done ;;
  compile-fix)  # [LIMIT]: seconds the call may take (default 560); each step skipped when it would pass them
    limit=${2:-560}
    step() {  # MIN MAX NAME COMMAND...: COMMAND for at most MAX s, stdout to NAME, stderr to NAME.err; skipped
      # when fewer than MIN s are left before $limit
      local left=$((limit - SECONDS))
      [ $left -lt "$1" ] && { echo "skipped: $3 (time)" >> "$OUT/skipped.txt"; return; }
      timeout $(($2 < left ? $2 : left)) "${@:4}" > "$OUT/$3" 2> "$OUT/$3.err" || true
    }
    step 240 300 pytest_compile.txt python3 -m pytest -q -s -m gpu test/test_compile_gpu.py  # (about 250 s)
    step 90 150 frame_smallcompile.json python3 test/bench/bench_pipeline.py --device cuda --bf16 --repeat 3 \
      --model small --compile --no-compile-check
    step 80 130 localize_encode_fixed.txt python3 test/bench/graph_localize.py --model small --inference-inputs \
      --parts encode --calls 50
    step 60 100 frame_tinycompile.json python3 test/bench/bench_pipeline.py --device cuda --bf16 --repeat 3 \
      --model tiny --compile --no-compile-check ;;
  upsampler-scan)
    for config in small streamsplat; do
      timeout 250 python3 test/bench/check_compile.py --config $config --autocast-only --scan \
        --modules gs_predictor.gaussian_upsampler gaussian_upsampler > "$OUT/upsampler_scan_$config.txt" 2>&1 || true
    done ;;
  fit-profile)
    timeout 240 python3 test/bench/perception_cost.py --model tiny --device cuda --scenes 3 --compile --one-processor \
      --sections --profile --cprofile "$OUT/perception_tiny_cprofile.txt" > "$OUT/perception_tiny_profile.txt" 2>&1 \
      || true ;;
  fit-check)
    timeout 200 python3 -m pytest -q -m gpu test/test_perception_fit_kernel.py test/test_perception_device.py \
      > "$OUT/pytest_fit.txt" 2>&1 || true
    for tree in new "${@:2}"; do tiny_cost "$tree"; done ;;
  fit-tune)
    timeout 200 python3 test/bench/fit_kernel_bench.py > "$OUT/fit_kernel.txt" 2>&1 || true
    timeout 100 python3 -m pytest -q -m gpu test/test_perception_fit_kernel.py test/test_perception_device.py \
      -k "kernel or waits_for" \
      > "$OUT/pytest_fit.txt" 2>&1 || true
    best=$(awk '$1 == "n=4096" && $2 == "kernel" && $5 == "us," && $NF + 0 < 1e-9 {print $4, $3}' \
      "$OUT/fit_kernel.txt" | sort -n | head -1 | cut -d' ' -f2)
    [ -n "$best" ] && timeout $((540 - SECONDS)) python3 -c "import runpy, sys
from nut_ros.perception import fit_kernel
fit_kernel.BLOCK, fit_kernel.WARPS = map(int, '$best'.split('x'))
sys.argv = ['perception_cost.py', *'$TINY_COST'.split()]
runpy.run_path('test/bench/perception_cost.py', run_name='__main__')" > "$OUT/perception_tiny_fit_$best.txt" 2>&1 \
      || true
    for tree in "${@:2}"; do tiny_cost "$tree"; done ;;
  compiled-ab)
    cp -rn nut_ros/weights/. "$2/nut_ros/weights/"; cp -rn nut_ros/data/. "$2/nut_ros/data/"  # (carried without them)
    for run in new1 base1 new2 base2; do  # (the first compiles with a cold Inductor cache: over 110 s on an H100)
      [ $SECONDS -gt 380 ] && { echo "skipped: $run (time)" >> "$OUT/skipped.txt"; continue; }
      path=$PWD; [ ${run%?} = base ] && path=$PWD/$2
      PYTHONPATH=$path bench $([ $run = new1 ] && echo 200 || echo 110) --model tiny --compile --no-compile-check \
        > "$OUT/ab_tiny_${run}_compiled.json" 2>> "$OUT/ab_tiny.err" || true  # (one stderr file: a call returns 8)
    done
    tiny_cost new ;;
  gpu-tests)
    paths=("${@:2}"); [ ${#paths[@]} -eq 0 ] && paths=(test)
    timeout 580 python3 -m pytest -q -m gpu "${paths[@]}" > "$OUT/pytest_gpu.txt" 2>&1 || true ;;
  perception-compile)
    for model in small tiny; do
      for run in eager compile; do
        timeout 200 python3 test/bench/perception_cost.py --model $model --device cuda --scenes 3 --sections \
          $([ $run = compile ] && echo --compile) > "$OUT/perception_${model}_$run.txt" 2>&1 || true
      done
      [ $model = small ] && { timeout 200 python3 -m pytest -q -m gpu test/test_perception_device.py \
        > "$OUT/pytest_perception.txt" 2>&1 || true; }
    done
    timeout 120 python3 test/bench/perception_cost.py --model small --device cuda --scenes 1 --repeat 1 --compile \
      --profile > "$OUT/perception_small_compile_profile.txt" 2>&1 || true ;;
  perception)
    base=${2:-}; extra=("${@:3}"); [ ${#extra[@]} -eq 0 ] && extra=(--scenes 3 --sections)
    [ -n "$base" ] && cp nut_ros/weights/*.safetensors "$base/nut_ros/weights/"
    for model in tiny small; do
      for tree in new ${base:+base}; do
        path=$PWD; [ "$tree" = base ] && path=$PWD/$base
        PYTHONPATH=$path timeout 280 python3 test/bench/perception_cost.py --model $model --device cuda \
          "${extra[@]}" > "$OUT/perception_${model}_$tree.txt" 2>&1 || true
      done
    done ;;
esac

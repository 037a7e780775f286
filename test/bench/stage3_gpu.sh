#!/usr/bin/env bash
# Stage-3 training (geometry + learned motion) of tiny and small side by side on one GPU, detached with setsid so
# that it outlives one device call. Run from the repo root on the GPU machine (no install needed: PYTHONPATH=.).
#   test/bench/stage3_gpu.sh start RGBD_NPZ MINUTES [ARGS]   start both runs under /tmp/stage3/<model>; ARGS go to
#                                                          both (e.g. --motion-only --lr 3e-4 --batch 32); with
#                                                          MODELS=small (or tiny) set, that run alone
#   test/bench/stage3_gpu.sh wait                     block until both runs have exited, print their last records
#   test/bench/stage3_gpu.sh export OUT               fp16 weights + logs of both runs into OUT (small's split in
#                                                     15 MB parts)
#   test/bench/stage3_gpu.sh heads OUT RGBD_NPZ       after --motion-only runs: the motion heads alone (fp16, a few MB),
#                                                     logs, and motion_eval of each model's trained weights into OUT;
#                                                     the shipped weights with those heads in $RUNS/<model>_shipped
set -euo pipefail
RUNS=/tmp/stage3
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
case "$1" in
  start)
    mkdir -p $RUNS
    rgbd=$2 minutes=$3
    shift 3
    for model in ${MODELS:-tiny small}; do
      batch=$([ $model = tiny ] && echo 16 || echo 8)
      setsid nohup python3 -m nut_ros.train.cli stage3 --model $model --out $RUNS/$model \
        --init nut_ros/weights/$model.safetensors --rgbd "$rgbd" --minutes "$minutes" --chunk-minutes 60 \
        --batch $batch --lr 4e-4 --warmup 100 --val-every 200 --device cuda "$@" > $RUNS/$model.out 2>&1 < /dev/null &
      echo $! > $RUNS/$model.pid
    done ;;
  wait)
    for model in ${MODELS:-tiny small}; do
      while kill -0 "$(cat $RUNS/$model.pid)" 2>/dev/null; do sleep 5; done
      tail -n 3 $RUNS/$model.out; grep '"val"' $RUNS/$model/log.jsonl | tail -n 1
    done ;;
  export)
    mkdir -p "$2"
    for model in ${MODELS:-tiny small}; do
      python3 -m nut_ros.train.cli export $RUNS/$model "$2/$model.safetensors"
      cp $RUNS/$model/log.jsonl "$2/${model}_s3.jsonl"
    done
    if [ -f "$2/small.safetensors" ]; then
      split -b 15M "$2/small.safetensors" "$2/small.safetensors.part" && rm "$2/small.safetensors"
    fi ;;
  heads)
    mkdir -p "$2"
    for model in ${MODELS:-tiny small}; do
      python3 -m nut_ros.train.cli export $RUNS/$model $RUNS/$model.safetensors
      python3 -c "import sys; from safetensors.torch import load_file, save_file
t = load_file(sys.argv[1]); save_file({k: v for k, v in t.items() if k.startswith('motion_head.')}, sys.argv[2])" \
        $RUNS/$model.safetensors "$2/${model}_motion_head.safetensors"
      python3 test/bench/swap_heads.py nut_ros/weights/$model.safetensors "$2/${model}_motion_head.safetensors" \
        $RUNS/${model}_shipped.safetensors
      cp $RUNS/$model/log.jsonl "$2/${model}_s3_motion.jsonl"
      timeout 300 python3 test/bench/motion_eval.py --model $model --weights $RUNS/$model.safetensors --rgbd "$3" \
        --device cuda --out "$2/motion_eval_$model.json" > /dev/null || true
    done ;;
esac

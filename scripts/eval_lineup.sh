#!/usr/bin/env bash
# The lineup behind docs/RESULTS.md "The lineup": every pair of SmolLM2-135M, Gemma-3-270M and
# Qwen2.5-Coder-0.5B, and all three together, with AdaFuse (tau 0.7, M 3, B 1), and each model alone,
# on the six ../shared/bench tasks. One eval per ensemble, all tasks in it, the four side by side:
#   scripts/eval_lineup.sh                  # resumable: run it again and finished items are kept
#   N=200 TASKS=nq,triviaqa OUT=runs/lineup LAUNCH="..." EVAL_ARGS="--device cuda --dtype float32"
# LAUNCH runs `-m adafuse eval` (default python); on one GPU, for example,
#   LAUNCH="python3 -m accelerate.commands.launch --multi_gpu --num_processes 4 --num_machines 1
#           --mixed_precision no --dynamo_backend no"
# gives each run 4 processes sharing the GPU (small models are launch-bound, so processes add
# throughput). The single models are decoded once, in their own run `singles` (greedy of a model
# does not depend on its partners). Logs: $OUT/<run>.log. ENSEMBLES picks some of
# singles trio smol+gemma smol+qwen gemma+qwen (default all).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/lineup}
N=${N:-200}
TASKS=${TASKS:-nq,triviaqa,squad,flores-de-en,flores-en-de,gsm8k}
GSM8K_TOKENS=${GSM8K_TOKENS:-128}   # as in docs/RESULTS.md's main tables
read -r -a LAUNCH <<< "${LAUNCH:-python}"
read -r -a EXTRA <<< "${EVAL_ARGS:-}"
S=smollm2-135m-instruct G=gemma3-270m Q=qwen2.5-coder-0.5b-instruct
mkdir -p "$OUT"

run() {   # run DIR LOG ARGS...: one resumable eval
  local dir=$1 log=$2 resume=(); shift 2
  [[ -f $dir/run.json ]] && resume=(--resume)
  "${LAUNCH[@]}" "${PORT_ARGS[@]}" -m adafuse eval "$@" --limit "$N" "${EXTRA[@]}" --threads 1 --no-progress --out "$dir" \
    "${resume[@]}" >> "$log" 2>&1
}

ensemble() {   # ensemble NAME MODELS METHODS: the tasks other than GSM8K, then GSM8K at its budget
  local tasks=${TASKS//gsm8k/} log=$OUT/$1.log PORT_ARGS=()
  # accelerate's launcher listens on one port per launch: each ensemble gets its own
  [[ ${LAUNCH[*]} == *accelerate* ]] && PORT_ARGS=(--main_process_port "${PORT[$1]}")
  tasks=$(echo "$tasks" | tr -s , | sed 's/^,//; s/,$//')
  { [[ -z $tasks ]] || run "$OUT/$1/main" "$log" --task "$tasks" --models "$2" --methods "$3"; } &&
  { [[ $TASKS != *gsm8k* ]] || run "$OUT/$1/gsm8k" "$log" --task gsm8k --max-new-tokens "$GSM8K_TOKENS" \
      --models "$2" --methods "$3"; } && echo "$1 done" || echo "$1 failed: see $log"
}

declare -A MODELS=([singles]="$S,$G,$Q" [trio]="$S,$G,$Q" [smol+gemma]="$S,$G" [smol+qwen]="$S,$Q" [gemma+qwen]="$G,$Q")
declare -A PORT=([singles]=29510 [trio]=29511 [smol+gemma]=29512 [smol+qwen]=29513 [gemma+qwen]=29514)
for e in ${ENSEMBLES:-singles trio smol+gemma smol+qwen gemma+qwen}; do
  methods=adafuse; [[ $e == singles ]] && methods=greedy
  ensemble "$e" "${MODELS[$e]}" "$methods" &
done
wait

#!/usr/bin/env bash
# The runs behind docs/RESULTS.md: the embedded pair on the ../shared/bench dev splits.
# Every step is resumable: run the script again and finished items are kept (--resume).
#   scripts/eval_results.sh [TASK...]  runs the given tasks' steps (default: all, in the order below).
# On a 2-core machine, two of these side by side on disjoint tasks use both cores; each eval runs
# with --threads 1 so that they do not oversubscribe the cores.
#   N_QA / N_SQUAD / N_MT / N_GSM8K   items per task (docs/RESULTS.md says what was run)
#   MT_TOKENS / GSM8K_TOKENS          optional --max-new-tokens for FLORES / GSM8K (default: the task's)
#   BATCH_ITEMS                       optional --batch-items: items decoded at once, forwards batched
#   OUT                               output root (default runs/results)
#   LAUNCH                            what runs `-m adafuse eval` (default: python); e.g. on one GPU,
#                                     12 processes sharing it: "python3 -m accelerate.commands.launch
#                                     --multi_gpu --num_processes 12 --num_machines 1 --mixed_precision no
#                                     --dynamo_backend no"
#   EVAL_ARGS                         more eval flags for every step, e.g. "--device cuda --dtype float32"
# Wall times go to $OUT/walltimes.tsv, one line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/results}
N_QA=${N_QA:-200}; N_SQUAD=${N_SQUAD:-200}; N_MT=${N_MT:-200}; N_GSM8K=${N_GSM8K:-200}
MAIN="adafuse,fixed:1,fixed:2,fixed:3,greedy"
MT=(); [[ -n ${MT_TOKENS:-} ]] && MT=(--max-new-tokens "$MT_TOKENS")
GSM=(); [[ -n ${GSM8K_TOKENS:-} ]] && GSM=(--max-new-tokens "$GSM8K_TOKENS")
BATCH=(); [[ -n ${BATCH_ITEMS:-} ]] && BATCH=(--batch-items "$BATCH_ITEMS")
read -r -a LAUNCH <<< "${LAUNCH:-python}"
read -r -a EXTRA <<< "${EVAL_ARGS:-}"
mkdir -p "$OUT"

step() {   # step NAME OUTDIR ARGS...: run one eval, resuming if OUTDIR holds a run
  local name=$1 dir=$2; shift 2
  local resume=(); [[ -f $dir/run.json ]] && resume=(--resume)
  local t0=$SECONDS
  local shown=("${LAUNCH[@]}" -m adafuse eval "$@" "${EXTRA[@]}" "${BATCH[@]}" --out "$dir")
  local cmd="${shown[*]}"   # what walltimes.tsv records (no double spaces where a flag group is empty)
  echo "== $name: $cmd ${resume[*]}" >&2
  "${LAUNCH[@]}" -m adafuse eval "$@" "${EXTRA[@]}" --threads 1 "${BATCH[@]}" --out "$dir" "${resume[@]}" --no-progress > "$dir.$name.log" 2>&1 || {
    echo "step $name failed, see $dir.$name.log" >&2; return 1; }
  printf '%s\t%s\t%d\t%s\n' "$name" "$dir" $((SECONDS - t0)) "$cmd" >> "$OUT/walltimes.tsv"
}

run_task() {
  case $1 in
    nq) step main "$OUT/nq" --task nq --limit "$N_QA" --methods "$MAIN"
        # B sweep: resumed into the main run's directory, so B=1 is reused, with its own report files.
        step bsweep "$OUT/nq" --task nq --limit "$N_QA" --methods adafuse --sweep branches=1,2,3 --report-name bsweep ;;
    triviaqa) step main "$OUT/triviaqa" --task triviaqa --limit "$N_QA" --methods "$MAIN" ;;
    squad) step main "$OUT/squad" --task squad --limit "$N_SQUAD" --methods "$MAIN" ;;
    flores-de-en|flores-en-de) step main "$OUT/$1" --task "$1" --limit "$N_MT" --methods "$MAIN" "${MT[@]}" ;;
    gsm8k) step main "$OUT/gsm8k" --task gsm8k --limit "$N_GSM8K" --methods "$MAIN" "${GSM[@]}"
           step bsweep "$OUT/gsm8k" --task gsm8k --limit "$N_GSM8K" --methods adafuse --sweep branches=1,2,3 --report-name bsweep "${GSM[@]}" ;;
    *) echo "unknown task $1" >&2; return 2 ;;
  esac
}

TASKS=("$@"); [[ ${#TASKS[@]} -gt 0 ]] || TASKS=(nq triviaqa squad flores-de-en flores-en-de gsm8k)
for t in "${TASKS[@]}"; do run_task "$t"; done

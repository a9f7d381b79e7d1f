#!/usr/bin/env bash
# Steps run on the GPU machine (the device tool) to carry the three embedded models there in
# 62 MB calls and measure them: real-weight speed (scripts/bench_gpu_real.py) and the lineup
# (scripts/eval_lineup.sh). Here, once: `scripts/device_cache.py pack` the three models, cat their
# GGUFs (smollm2, gemma3, qwen order) into one stream and `split -b 62000000` it; put the tokenizer
# folders, manifest.json, the stream's sha256 (stream.sha) and ../shared/bench/ into .xfer/base.tgz,
# the gguf wheel into .whl/. Then one device call per step, each carrying .xfer (and .whl first):
#   init           unpack base.tgz, install the gguf wheel, copy the code to /root/repo
#   append         append .xfer/c (the next chunk) to the stream
#   pair           (once smollm2 + gemma3 have arrived) in the background: install both into the
#                  cache (every tensor checked), bench their pair alone on the GPU, then start the
#                  smol+gemma lineup eval
#   rest           (after the last chunk) check the stream's sha256, install Qwen, pause the evals,
#                  bench gemma+qwen, resume, start the other three ensembles
#   more TASKS     (a later lease, after init + append x14) check the stream, install all three models,
#                  unpack the archived runs (docs/results/lineup-*.tar.xz) and, in the background,
#                  resume every ensemble on TASKS: trio, pairs and singles with their own process counts
#                  (PROCS_TRIO, PROCS_PAIR, PROCS_SINGLES), on every GPU (--device auto)
#   fusion         (after `more`, from this checkout) in the background: issue 15's before/after, the
#                  SmolLM2 + Gemma pair on the six tasks with this checkout's code into $RUNS/after (the
#                  lineup's own runs are the before), and scripts/check_gpu_item.py under that load
#   after TASKS    (a lease with init + append x6, enough for SmolLM2 + Gemma) the same pair's after
#                  runs on TASKS alone, from this checkout, in the background
#   baselines TASKS  (a lease with init + appends of a Gemma + Qwen stream) issue 18's baselines on
#                  the default pair, TASKS, from this checkout, in the background
#   check          the GPU item check in the foreground, alone on the machine (after `collect`)
#   status         logs and item counts
#   collect        stop the evals and pack runs + bench JSON into $OUT
set -u
X=/root/x R=/root/repo N=/root/new RUNS=/root/runs   # R: the lineup's code, N: this checkout (fusion)
export HF_HUB_OFFLINE=1 ADAFUSE_CACHE=/root/cache ADAFUSE_BENCH_DIR=$X/bench TOKENIZERS_PARALLELISM=false \
       PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
SMOL=smollm2-135m-instruct GEMMA=gemma3-270m QWEN=qwen2.5-coder-0.5b-instruct
SMOL_BYTES=98362432 GEMMA_BYTES=253113024 QWEN_BYTES=491400064
launch() {   # launch PROCESSES: accelerate's launcher for that many processes
  echo "python3 -m accelerate.commands.launch --multi_gpu --num_processes $1 --num_machines 1 --mixed_precision no --dynamo_backend no"
}

lineup() {   # lineup ENSEMBLES...  (PROCS processes each, on ${EVAL_DEVICE:-cuda})
  (cd $R && OUT=$RUNS LAUNCH="$(launch ${PROCS:-3})" EVAL_ARGS="--device ${EVAL_DEVICE:-cuda} --dtype float32" \
     ENSEMBLES="$*" bash scripts/eval_lineup.sh)
}

extract() {   # extract MODEL...: each model's GGUF out of the stream, whose models are those named in
  # stream.models in its order (no such file: smollm2, gemma3, qwen)
  local m skip=0
  declare -A bytes=([$SMOL]=$SMOL_BYTES [$GEMMA]=$GEMMA_BYTES [$QWEN]=$QWEN_BYTES)
  for m in $(cat $X/stream.models 2>/dev/null || echo $SMOL $GEMMA $QWEN); do
    [[ " $* " == *" $m "* ]] && tail -c +$((skip + 1)) $X/stream.bin | head -c ${bytes[$m]} > $X/$m.gguf
    skip=$((skip + ${bytes[$m]}))
  done
}

stream_ok() {
  [[ $(sha256sum $X/stream.bin | cut -c1-64) == $(cat $X/stream.sha) ]] || { echo "stream sha256 differs"; exit 1; }
}

background() {   # background STEP [REPO]: run REPO's (default $R) copy of this script's STEP detached,
  # so it outlives the call (never the carried tree's copy: the next call replaces it)
  setsid nohup bash ${2:-$R}/scripts/device_lineup.sh "$1" > $RUNS/$1.log 2>&1 < /dev/null &
  sleep 2; echo "started $1"
}

from_checkout() {   # from_checkout STEP TASKS MODEL...: the MODELs' GGUFs out of the stream, then
  # STEP-bg detached, from a copy of this checkout ($N), with TASKS saved for it
  local step=$1 tasks=$2; shift 2
  extract "$@"
  rm -rf $N && mkdir -p $N && cp -r adafuse scripts assets app.py $N/
  echo "$tasks" > $RUNS/$step.tasks
  background $step-bg $N
}

pair_evals() {   # pair_evals NAME PORT METHODS MODEL...: the MODELs installed, then METHODS on NAME.tasks
  # from $N into $RUNS/NAME, 200 items: the tasks other than GSM8K in one run (PROCS_MAIN processes),
  # GSM8K at its budget of 128 tokens in another (PROCS_GSM8K), side by side
  local name=$1 port=$2 methods=$3 m tasks main args; shift 3
  cd $N && for m in "$@"; do python3 scripts/device_cache.py unpack $X --models $m & done; wait
  tasks=$(cat $RUNS/$name.tasks)
  args="--models $(echo "$@" | tr ' ' ,) --methods $methods --limit 200 --device auto --dtype float32 --threads 1 --no-progress"
  main=$(echo ,$tasks, | sed 's/,gsm8k,/,/; s/^,//; s/,$//')
  [[ -n $main ]] && $(launch ${PROCS_MAIN:-7}) --main_process_port $port -m adafuse eval $args \
    --task $main --out $RUNS/$name/main > $RUNS/$name-main.log 2>&1 &
  [[ ,$tasks, == *,gsm8k,* ]] && $(launch ${PROCS_GSM8K:-8}) --main_process_port $((port + 1)) -m adafuse eval $args \
    --task gsm8k --max-new-tokens 128 --out $RUNS/$name/gsm8k > $RUNS/$name-gsm8k.log 2>&1 &
  wait
}

case $1 in
  init)
    mkdir -p $X $RUNS && tar -xzf .xfer/base.tgz -C $X
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    rm -rf $R && mkdir -p $R && cp -r adafuse scripts assets app.py $R/
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv; nproc ;;
  append)
    cat .xfer/c >> $X/stream.bin && stat -c '%s bytes in the stream' $X/stream.bin ;;
  pair)
    extract $SMOL $GEMMA
    background pair-bg ;;
  pair-bg)
    cd $R && python3 scripts/device_cache.py unpack $X --models $SMOL,$GEMMA || exit 1
    python3 scripts/bench_gpu_real.py --models $SMOL,$GEMMA --out $RUNS/bench-smol-gemma ${BENCH_ARGS:-}
    touch $RUNS/bench1.done
    lineup smol+gemma ;;
  rest)
    stream_ok
    extract $QWEN
    background rest-bg ;;
  rest-bg)
    cd $R && python3 scripts/device_cache.py unpack $X --models $QWEN || exit 1
    while [ ! -f $RUNS/bench1.done ]; do sleep 2; done
    pkill -STOP -f '[a]dafuse eval'      # the bench has the GPU to itself
    python3 scripts/bench_gpu_real.py --models $GEMMA,$QWEN --out $RUNS/bench-gemma-qwen ${BENCH_ARGS:-}
    pkill -CONT -f '[a]dafuse eval'
    lineup singles trio smol+qwen gemma+qwen ;;
  more)
    stream_ok
    extract $SMOL $GEMMA $QWEN
    tar -xJf docs/results/lineup-h200-2026-11-30.tar.xz -C $RUNS   # (run from the carried checkout)
    # the archive keeps the first lease's split of the trio run; the singles resume from theirs
    [[ -d $RUNS/trio/singles && ! -e $RUNS/singles ]] && mkdir -p $RUNS/singles && mv $RUNS/trio/singles $RUNS/singles/main
    echo "$2" > $RUNS/more.tasks
    background more-bg ;;
  more-bg)
    cd $R && for m in $SMOL $GEMMA $QWEN; do python3 scripts/device_cache.py unpack $X --models $m & done; wait
    export TASKS=$(cat $RUNS/more.tasks) EVAL_DEVICE=auto
    PROCS=${PROCS_TRIO:-14} lineup trio > $RUNS/more-trio.log 2>&1 &
    PROCS=${PROCS_PAIR:-4} lineup smol+gemma smol+qwen gemma+qwen > $RUNS/more-pairs.log 2>&1 &
    PROCS=${PROCS_SINGLES:-3} lineup singles > $RUNS/more-singles.log 2>&1 &
    wait ;;
  fusion)
    rm -rf $N && mkdir -p $N && cp -r adafuse scripts assets app.py $N/
    background fusion-bg $N ;;
  fusion-bg)
    while ! pgrep -f '[a]dafuse eval' > /dev/null; do sleep 2; done   # more-bg has installed the models
    cd $N && mkdir -p $RUNS/check
    args="--models $SMOL,$GEMMA --methods adafuse --limit 200 --device auto --dtype float32 --threads 1 --no-progress"
    $(launch ${PROCS_AFTER:-6}) --main_process_port 29520 -m adafuse eval $args \
      --task ${AFTER_TASKS:-nq,triviaqa,squad,flores-de-en,flores-en-de} --out $RUNS/after/main > $RUNS/after-main.log 2>&1 &
    [[ ${PROCS_AFTER_GSM8K:-8} -gt 0 ]] && $(launch ${PROCS_AFTER_GSM8K:-8}) --main_process_port 29521 -m adafuse eval $args \
      --task gsm8k --max-new-tokens 128 --out $RUNS/after/gsm8k > $RUNS/after-gsm8k.log 2>&1 &
    # the GPU item check among the evals (the loaded case), with this checkout's code
    PYTHONPATH=$N:$PYTHONPATH THREADS=4 python3 scripts/check_gpu_item.py --devices cuda --repeats 1 \
      --out $RUNS/check/loaded.jsonl > $RUNS/check-loaded.log 2>&1 &
    wait ;;
  after)   # after TASKS (a lease with init + append x6: SmolLM2 and Gemma only) from this checkout,
    # in the background: issue 15's after runs of the SmolLM2 + Gemma pair on TASKS into $RUNS/after
    from_checkout after "$2" $SMOL $GEMMA ;;
  after-bg)
    pair_evals after 29520 adafuse $SMOL $GEMMA ;;
  baselines)   # baselines TASKS (a lease with init + appends of a stream of Gemma and Qwen alone, its
    # stream.models saying so): issue 18's baselines on the default pair from this checkout, in the
    # background: AdaFuse, UniTE and each model alone into $RUNS/baselines, GSM8K at its budget
    stream_ok
    from_checkout baselines "$2" $GEMMA $QWEN ;;
  baselines-bg)
    pair_evals baselines 29530 adafuse,unite,greedy $GEMMA $QWEN ;;
  check)   # from the carried tree (not $N): checks a fix made after `fusion`
    PYTHONPATH=.:$PYTHONPATH THREADS=8 python3 scripts/check_gpu_item.py --devices cuda --repeats 1 \
      --out $RUNS/check/alone.jsonl | cut -c1-300 | tail -n 40
    cp -r $RUNS/check $OUT/ ;;
  lineup)   # lineup ENSEMBLES...: (again) in the foreground, for a detached restart
    shift; lineup "$@" ;;
  status)
    tail -n 5 $RUNS/*.log 2>/dev/null | cut -c1-300
    for d in $RUNS/*/*/*/; do   # finished items per run folder, task and method (rank pieces summed)
      for m in $(ls $d 2>/dev/null | sed -n 's/\.rank[0-9]*\.jsonl$//p; s/\.jsonl$//p' | sort -u); do
        echo "$(cat $d$m.jsonl $d$m.rank*.jsonl 2>/dev/null | wc -l) ${d#$RUNS/}$m"; done; done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader ;;
  collect)
    pkill -f '[a]dafuse eval'; sleep 3
    cd $RUNS && tar -cf - --exclude='*.html' . | xz -T16 -6 > $OUT/runs.tar.xz
    ls -la $OUT; split -b 15000000 -d -a 1 $OUT/runs.tar.xz $OUT/runs.tar.xz. && rm $OUT/runs.tar.xz
    for d in $RUNS/bench-*/; do cp $d/bench_gpu_real.json $OUT/$(basename $d).json; done; ls -la $OUT ;;   # logs: in the tar
esac

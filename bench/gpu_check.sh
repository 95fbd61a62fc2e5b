#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine (see README "GPU"): real training on CUDA with mixed
# precision through the worker process, the learning-rate finder, and the training tests.
# Expects the wheels of the packages that machine lacks in .whl/ (the README says which).
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"
python3 bench/epoch_speed.py --find-lr 2>&1 | grep -v -i warn | tee "$out/train_128.txt"
python3 bench/epoch_speed.py --size 224 2>&1 | grep -v -i warn | tee "$out/train_224.txt"
python3 -m pytest tests/test_training.py -q -p no:cacheprovider 2>&1 | tail -15 | tee "$out/pytest_training.txt"

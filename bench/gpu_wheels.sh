#!/usr/bin/env bash
# Prepare what bench/gpu_check.py needs on a lent GPU machine, where nothing can be downloaded: the
# wheels its image lacks (it has torch, transformers, peft and accelerate) and the demo model's
# tokenizer (the demo's weights, 90 MB of GGUF, do not fit the 64 MiB that travels: the check builds
# SmolLM2-135M from its config with random weights instead, which trains at the same speed).
# Run here, in the repository root; the last lines say how to start the check there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  trl==1.16.0 datasets==5.2.0 bitsandbytes==0.50.2 liger-kernel==0.8.5 textual==8.2.8 textual-plotext==1.0.1 \
  plotext==5.3.2 platformdirs==4.14.8 gguf==0.19.0 dill==0.4.1 multiprocess==0.70.19 mdit-py-plugins==0.7.0
.venv/bin/python - <<'PY'
from transformers import AutoTokenizer

from engine import models

AutoTokenizer.from_pretrained(models.materialize("demo")).save_pretrained(".gpu/tokenizer")
PY
du -sh .gpu
cat <<'HOW'
On the GPU machine (the device tool's run, carry [".gpu"], timeout 600):
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:. TUNEDECK_GPU_TOKENIZER=.gpu/tokenizer PYTHONUNBUFFERED=1 && python3 bench/gpu_check.py --json $OUT/gpu-check.json 2>&1 | tee $OUT/gpu-check.log
HOW

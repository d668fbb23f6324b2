#!/usr/bin/env bash
# The one prepared run for a GPU machine (docs/gpu.md, "Measuring on a GPU"): install the missing wheels from
# gpu-wheels/ if the folder came along, run the CUDA tests, then the real-size bench under the L4 cap (which also does
# the out-of-memory run and low_memory), and a tiny bench as a fallback figure if the real one fails. Everything goes
# under $OUT; every step has its own timeout so the whole fits in 8 minutes (480 s) of a 10-minute call.
#
#   bash scripts/bench/gpu_device.sh            # from the repository root; OUT defaults to ./gpu-out
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
log() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/steps.log"; }

# 1. Environment and wheels (20 s). --no-deps: the image's torch, transformers, peft and accelerate stay as they are.
{
  python -V; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
} > "$OUT/env.txt" 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repository is not installed there
if [ -d gpu-wheels ]; then
  if timeout 60 python -m pip install --no-index --no-deps --find-links gpu-wheels gpu-wheels/*.whl \
      > "$OUT/pip.txt" 2>&1; then
    log "pip install from gpu-wheels: done"
  else  # no pip, or a read-only site-packages: a wheel is a zip archive, importable once unpacked
    mkdir -p /tmp/gpu-site
    for w in gpu-wheels/*.whl; do python -m zipfile -e "$w" /tmp/gpu-site; done
    export PYTHONPATH="/tmp/gpu-site:$PYTHONPATH"
    log "pip install failed (pip.txt); wheels unpacked into /tmp/gpu-site instead"
  fi
fi
python - >> "$OUT/env.txt" 2>&1 <<'EOF'
import importlib.metadata as md
for d in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "colpali-engine", "pydantic-settings",
          "pillow", "numpy", "torchvision", "pytest"):
    try:
        print(d, md.version(d))
    except md.PackageNotFoundError:
        print(d, "MISSING")
EOF
log "environment written to env.txt"

export PAGEQA_HOME="$OUT/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK=${GPU_BENCH_WORKDIR:-/tmp/pageqa-bench-gpu}  # ~25 GB of real-size checkpoints: not under $OUT, never fetched

# 2. The CUDA tests on the tiny set (90 s). Without pytest-timeout the ini's `timeout` is only a warning.
timeout 90 python -m pytest -q -p no:cacheprovider tests/models/test_cuda.py -rA \
  --junitxml="$OUT/test_cuda.xml" > "$OUT/test_cuda.txt" 2>&1
log "tests/models/test_cuda.py: rc $?"

# 3. Real size under the L4's 22.5 GiB: build and save (~25 GB), load back, both residency modes, OOM run (300 s).
timeout 300 python -m scripts.bench.gpu --size real --device cuda --memory-gib 22.5 --pages 16 --questions 16 \
  --workdir "$WORK" --output "$OUT/real" > "$OUT/real.txt" 2>&1
REAL=$?
log "bench real: rc $REAL"

# 4. If the real size did not finish, the tiny set on CUDA still checks the path end to end (60 s).
if [ "$REAL" -ne 0 ]; then
  timeout 60 python -m scripts.bench.gpu --size tiny --device cuda --memory-gib 22.5 --pages 8 --questions 8 \
    --workdir "$WORK" --output "$OUT/tiny" > "$OUT/tiny.txt" 2>&1
  log "bench tiny: rc $?"
fi
rm -rf "$WORK/real"
log "done"

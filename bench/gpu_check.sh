#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU (CI never has one; an H200 is sometimes lent):
# installs what is missing, trains dotbias on MovieLens 100K (the chapter's recipe, fp32 and
# bf16-mixed) and on a 25M-rating synthetic set, and prints ratings/s and val loss. Under 8 minutes.
#
#   bash bench/gpu_check.sh               # on the GPU machine
#   bash bench/gpu_check.sh --cpu-smoke   # the same steps on the CPU with tiny sizes (tests the script)
#   bash bench/gpu_check.sh --zoo         # then one epoch of every model of the zoo at the 25M shape
#   bash bench/gpu_check.sh --cpu-smoke --zoo   # (the zoo at the 100K shape on the CPU)
#
# --zoo adds bench/zoo_scale.py's runs (docs/benchmarks.md "The zoo at scale"): their time is not in the
# 8 minutes (the 25M set is generated first, about 2 minutes on 2 CPU cores), so give it its own call.
#
# MovieLens 100K is looked for in $CF_ML100K, data/ml-100k (git-ignored: copy it there and carry it
# to the device machine), then ../shared/datasets/ml-100k. Run folders go under $OUT (the device
# tool's folder that comes back) or a temporary folder. Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
ZOO=0
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) SMOKE=1 ;;
    --zoo) ZOO=1 ;;
    *) echo "usage: bash bench/gpu_check.sh [--cpu-smoke] [--zoo]" >&2; exit 2 ;;
  esac
done

OUT="${OUT:-$(mktemp -d)}"
RUNS="$OUT/gpu_check"
mkdir -p "$RUNS"
export CF_LIGHTNING_CACHE="${CF_LIGHTNING_CACHE:-$RUNS/cache}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works without `pip install -e .` too
START=$SECONDS
say() { echo "[gpu_check $((SECONDS - START))s] $*"; }

# --- 1. what it needs --------------------------------------------------------------------------
if ! python -c "import torch, pytorch_lightning, hydra, omegaconf, pandas, torchmetrics, tensorboard" 2>/dev/null; then
  say "installing the project's dependencies"
  python -m pip install --quiet -e .
fi
if [[ $SMOKE == 1 ]]; then
  ACCEL=cpu
else
  ACCEL=gpu
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device: install a CUDA build of torch (or run --cpu-smoke)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16: {torch.cuda.is_bf16_supported()}")
EOF
fi

ML100K=""
for candidate in "${CF_ML100K:-}" data/ml-100k ../shared/datasets/ml-100k; do
  if [[ -n "$candidate" && -f "$candidate/u.data" ]]; then ML100K="$candidate"; break; fi
done

# --- 2. the data sets --------------------------------------------------------------------------
if [[ $SMOKE == 1 ]]; then
  N_USERS=2000 N_ITEMS=1000 N_RATINGS=200000
else
  N_USERS=162000 N_ITEMS=59000 N_RATINGS=25000000  # MovieLens 25M's shape
fi
SYNTH="$RUNS/synthetic-$N_RATINGS"
if [[ ! -f "$SYNTH/u.data" ]]; then
  say "generating $N_RATINGS synthetic ratings in $SYNTH"
  python -c "
from cf_lightning.data.synthetic import generate_movielens_fast
generate_movielens_fast('$SYNTH', n_users=$N_USERS, n_items=$N_ITEMS, n_ratings=$N_RATINGS)"
fi
if [[ -z "$ML100K" ]]; then
  if [[ $SMOKE == 0 ]]; then
    echo "MovieLens 100K not found: copy it to data/ml-100k (git-ignored) and carry it, or set CF_ML100K" >&2
    exit 1
  fi
  ML100K="$RUNS/ml100k-standin"  # the smoke run needs no real data: a 100K-sized synthetic stand-in
  [[ -f "$ML100K/u.data" ]] || python -c "
from cf_lightning.data.synthetic import generate_movielens_fast
generate_movielens_fast('$ML100K', n_users=943, n_items=1682, n_ratings=100000)"
fi

# --- 3. training runs --------------------------------------------------------------------------
COMMON=(callbacks.progress_bar_refresh_rate=0 evaluation.ranking=false "accelerator=$ACCEL")
# One torch thread on the CPU: on a small shared machine, threads that wait for each other at
# every op make a step many times slower than one thread does.
[[ $SMOKE == 1 ]] && COMMON+=(threads=1)
train() {  # train NAME OVERRIDES...: one run folder per name
  local name=$1; shift
  say "training $name: $*"
  python -m cf_lightning.train "${COMMON[@]}" "$@" "hydra.run.dir=$RUNS/$name" > "$RUNS/$name.log" 2>&1 \
    || { tail -40 "$RUNS/$name.log"; exit 1; }
}
SHORT=()
[[ $SMOKE == 1 ]] && SHORT=(epochs=1)
BF16=accelerator.precision=bf16-mixed  # bfloat16 autocast (the CPU smoke run has it too)
train ml100k_fp32 "data.root=$ML100K" "${SHORT[@]}"                     # the chapter: bs 64, 5 epochs
train ml100k_bf16 "data.root=$ML100K" "${SHORT[@]}" "$BF16"
train synthetic25m_fp32 "data.root=$SYNTH" epochs=1 data.batch_size=8192 data.eval_batch_size=65536 \
  logger=none callbacks.checkpoint=false
# The top-N zoo at the 25M shape on the device (issue 21, docs/benchmarks.md "The zoo at scale"):
# iALS sweeps (exact, CG), EASE on the 20,000 most-interacted items, and dotbias ranked over every user
# by the streamed ranking evaluation (scores, masks and top-k on the GPU).
ZOO=("data.root=$SYNTH" data.batch_size=65536 data.eval_batch_size=65536 logger=none callbacks.checkpoint=false \
  evaluation.monitor=val/loss)
train zoo25m_ials "${ZOO[@]}" model=ials epochs=2
train zoo25m_ials_cg "${ZOO[@]}" model=ials epochs=2 model.solver=cg
train zoo25m_ease "${ZOO[@]}" model=ease epochs=1 model.max_items=20000 model.dtype=float32
say "training zoo25m_dotbias_ranked (every user ranked)"
python -m cf_lightning.train callbacks.progress_bar_refresh_rate=0 "accelerator=$ACCEL" "data.root=$SYNTH" \
  epochs=1 data.batch_size=8192 data.eval_batch_size=65536 logger=none callbacks.checkpoint=false \
  evaluation.ranking=true evaluation.max_users=null "hydra.run.dir=$RUNS/zoo25m_dotbias_ranked" > "$RUNS/zoo25m_dotbias_ranked.log" 2>&1 \
  || { tail -40 "$RUNS/zoo25m_dotbias_ranked.log"; exit 1; }

# --- 4. the figures ----------------------------------------------------------------------------
python - "$RUNS" ml100k_fp32 ml100k_bf16 synthetic25m_fp32 <<'EOF'
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

runs = Path(sys.argv[1])
print(f"\n{'run':<20} {'train rows':>11} {'epochs':>6} {'batch':>6} {'seconds':>8} {'ratings/s':>11} {'val/loss':>9}")
for name in sys.argv[2:]:
    folder = runs / name
    metrics = json.loads((folder / "metrics.json").read_text())
    cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
    n_rows = sum(1 for _ in open(Path(cfg.data.root) / "u.data", "rb"))
    train_rows = n_rows - int(cfg.data.valid_pct * n_rows)
    seconds = sum(metrics["epoch_times"])  # each epoch's wall time, its validation included
    rate = train_rows * metrics["epochs"] / seconds
    print(f"{name:<20} {train_rows:>11,} {metrics['epochs']:>6} {cfg.data.batch_size:>6} {seconds:>8.1f} "
          f"{rate:>11,.0f} {metrics['val/loss']:>9.4f}")
EOF

# --- 5. the zoo at the 25M shape (--zoo) -------------------------------------------------------
# One epoch (or sweep) of every model through the train command on the device, as bench/zoo_scale.py
# measures it on the CPU: seconds per epoch, the whole run's peak RSS, and a failure if a checkpoint holds
# a users × items tensor. One call per model, so a model that fails leaves the others' rows.
if [[ $ZOO == 1 ]]; then
  ZOO_SHAPE=25m
  [[ $SMOKE == 1 ]] && ZOO_SHAPE=100k
  ZOO_MODELS=(global_mean popularity bias_only dot dot_range dotbias dotbias_params embdotbias collabnn embnn
    svdpp bpr_mf ials ease bayesian_mf autorec kernel_ae blend)
  ZOO_FAILED=()
  for model in "${ZOO_MODELS[@]}"; do
    EXTRA=("accelerator=$ACCEL")
    [[ $model == ease ]] && EXTRA+=(model.max_items=20000)
    say "zoo at $ZOO_SHAPE: $model"
    python -m bench.zoo_scale --shape "$ZOO_SHAPE" --models "$model" --workdir "$RUNS/zoo" \
      --out "$RUNS/zoo_scale_$ACCEL.csv" --extra "${EXTRA[@]}" > "$RUNS/zoo_$model.log" 2>&1 \
      || { tail -5 "$RUNS/zoo_$model.log"; ZOO_FAILED+=("$model"); }
  done
  column -s, -t < <(cut -d, -f1-4,7 "$RUNS/zoo_scale_$ACCEL.csv") || true
  [[ ${#ZOO_FAILED[@]} == 0 ]] || say "zoo: failed: ${ZOO_FAILED[*]} (their logs: $RUNS/zoo_<model>.log)"
fi
say "done; run folders in $RUNS"

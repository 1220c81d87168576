#!/bin/bash
# protocol=strong_generalization on real ML-100K (94 validation and 94 test users: protocol.held_out_users=0.1),
# each model's small grid scored on the validation users only; then the ml1m_random_90_10 recipe as a smoke run.
#   bash bench/protocols_ml100k.sh /path/to/ml-100k outputs/protocols/ml100k
set -euo pipefail
DATA=${1:?the ml-100k folder}; OUT=${2:-outputs/protocols/ml100k}
COMMON="protocol=strong_generalization protocol.held_out_users=0.1 data.root=$DATA logger=none threads=1
 callbacks.progress_bar_refresh_rate=0 callbacks.checkpoint=true"
grid() {  # grid NAME overrides...: one multirun per model into $OUT/NAME
  local name=$1; shift
  python -m cf_lightning.train -m $COMMON "$@" hydra.sweep.dir="$OUT/$name" hydra.sweep.subdir='${hydra.job.num}' \
    > "$OUT/$name.log" 2>&1
}
mkdir -p "$OUT"
grid popularity model=popularity epochs=1
grid ease model=ease epochs=1 model.l2=50,100,200,400,800
grid ials model=ials epochs=10 model.unobserved_weight=0.1,0.5 model.l2=0.01,0.1
grid bpr_mf model=bpr_mf epochs=20 optimizer.lr_max=0.01,0.05 optimizer.wd=0.01,0.1
grid mult_vae model=mult_vae epochs=200 data.batch_size=100,250
grid mult_dae model=mult_dae epochs=200 data.batch_size=100,250
python -m bench.protocol_select "$OUT"/{popularity,ease,ials,bpr_mf,mult_vae,mult_dae} | tee "$OUT/chosen.txt"
# The 90/10 recipe of ML-1M on ML-100K's ratings: a smoke figure (the published RMSE are ML-1M's).
python -m cf_lightning.train protocol=ml1m_random_90_10 'protocol.data_sets=[]' data.root=$DATA logger=none threads=1 \
  callbacks.progress_bar_refresh_rate=0 model=dotbias hydra.run.dir="$OUT/ml1m_recipe_dotbias" > "$OUT/ml1m_recipe.log" 2>&1
python -m cf_lightning.results_table --protocol-runs $(sed -n 's/^chosen: //p' "$OUT/chosen.txt") \
  "$OUT/ml1m_recipe_dotbias" --out "$OUT/table.md"

#!/usr/bin/env bash
# Re-train the model emgdx ships (src/emgdx/pretrained/default) on both hospitals' data, with
# the default configuration of `emgdx train` (emgdx.pretrained.default_pipeline), and put its
# card beside it. A new model needs a new card: docs/model-card.md names the weights' SHA-256
# and the figures; tests/test_pretrained.py fails until the card matches the weights.
#   usage: scripts/train-default-model.sh        (data at $EMGDX_DATA, else ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${EMGDX_DATA:-../shared/data}"
emgdx train "$data/n2001" "$data/algiers" --out src/emgdx/pretrained/default --overwrite \
  --threads 2 --json > docs/results/default-model.json
cp docs/model-card.md src/emgdx/pretrained/default/MODEL_CARD.md
python - <<'PY'
import json
doc = json.load(open("src/emgdx/pretrained/default/pipeline.json"))
print("weights sha256:", doc["weights_sha256"])
PY

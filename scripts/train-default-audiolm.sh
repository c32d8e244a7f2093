#!/usr/bin/env bash
# The recipe of the shipped models/default-audiolm bundle, on a CPU: every stage with a time
# limit, one torch thread per process (run on a GPU with --device cuda for a better model).
#   ./scripts/train-default-audiolm.sh DATA OUT
# DATA: a corpus folder or manifest (e.g. both corpora of `audiogen-studio corpus speech|music`);
# OUT: the bundle folder. Re-running resumes every stage from OUT/checkpoint/.
# Times (seconds) can be changed through CODEC_SECONDS, SEMANTIC_SECONDS, LM_SECONDS.
set -euo pipefail
DATA=${1:?usage: train-default-audiolm.sh DATA OUT}
OUT=${2:?usage: train-default-audiolm.sh DATA OUT}
cd "$(dirname "$0")/.."
AG=".venv/bin/audiogen-studio"
common=(--data "$DATA" --bundle "$OUT" --threads 1)
# codec and semantic tokenizer are independent: train them side by side
$AG train codec "${common[@]}" --name default-audiolm --config scripts/default-audiolm-codec.json --discriminator none \
  --steps 100000 --batch 8 --segment 0.5 --quantize-start 1500 --lr 6e-4 \
  --time-limit "${CODEC_SECONDS:-4200}" --save-every 250 &
codec=$!
$AG train semantic "${common[@]}" --name default-audiolm --config default --steps 1500 --batch 8 \
  --crop-seconds 2 --kmeans-seconds 300 --time-limit "${SEMANTIC_SECONDS:-1260}" --save-every 250
wait $codec
# the semantic LM first: it tokenises the corpus into OUT/work/ for the other two
$AG train lm-semantic "${common[@]}" --size default --window 250 --steps 20000 --batch 16 \
  --time-limit "${LM_SECONDS:-900}"
$AG train lm-coarse "${common[@]}" --size small --window 100 --steps 20000 --batch 16 \
  --time-limit "${LM_SECONDS:-900}" &
coarse=$!
$AG train lm-fine "${common[@]}" --size small --window 50 --steps 20000 --batch 16 \
  --time-limit "${LM_SECONDS:-900}"
wait $coarse

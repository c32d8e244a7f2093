#!/usr/bin/env bash
# Renders the README's audio examples into resources/examples/: held-out prompts cut from the
# corpora's test split (voices and instruments no model was trained on) and the shipped bundles'
# continuations of them, through the CLI, as small OGG files.
#   ./scripts/render-examples.sh SPEECH_CORPUS [MUSIC_CORPUS]
set -euo pipefail
SPEECH=${1:?usage: render-examples.sh SPEECH_CORPUS [MUSIC_CORPUS]}
MUSIC=${2:-}
cd "$(dirname "$0")/.."
AG=".venv/bin/audiogen-studio"
OUT=resources/examples
mkdir -p "$OUT"
# speech: 3 s of the held-out festival cmu_us_slt_arctic_hts voice
sox "$SPEECH/audio/test/festival/festival_cmu_us_slt_arctic_hts/s000014.flac" \
  "$OUT/speech-prompt.ogg" trim 0 3
# (AudioLM takes sample at the bundles' tuned per-stage temperatures: the CLI's defaults)
$AG continue "$OUT/speech-prompt.ogg" --model speech --seconds 4 --takes 2 --seed 1 \
  --no-progress --no-library --overwrite -o "$OUT/speech-continued.ogg"
# the same prompt, the take started as 4 beginnings of which the one whose voice matches the
# prompt best went on (continue --candidates 4)
$AG continue "$OUT/speech-prompt.ogg" --model speech --seconds 4 --candidates 4 --seed 1 \
  --no-progress --no-library --overwrite -o "$OUT/speech-continued-candidates.ogg"
shipped() { grep -q "^  $1 " <<< "$($AG models list)"; }
if shipped wavenet-vocoder; then
  # the same held-out prompt re-synthesized from its log-mel by the WaveNet vocoder
  $AG vocode "$OUT/speech-prompt.ogg" --model wavenet-vocoder --seed 1 --no-progress \
    --no-library --overwrite -o "$OUT/speech-vocoded.ogg"
fi
if [ -n "$MUSIC" ]; then
  # music: 4 s of a reel on the held-out clarinet
  sox "$MUSIC/audio/test/ryansMammoth/m000021.flac" "$OUT/music-prompt.ogg" trim 0 4
  if shipped music; then
    $AG continue "$OUT/music-prompt.ogg" --model music --seconds 4 --takes 2 --seed 1 \
      --no-progress --no-library --overwrite -o "$OUT/music-continued.ogg"
  fi
  if shipped wavenet-music; then
    # sample by sample: 2 s
    $AG continue "$OUT/music-prompt.ogg" --engine wavenet --model wavenet-music --seconds 2 \
      --seed 1 --temperature 1.0 --no-progress --no-library --overwrite \
      -o "$OUT/music-wavenet-continued.ogg"
  fi
fi
ls -l "$OUT"

#!/usr/bin/env bash
# The recipe of the shipped bundles, on a CPU: every stage with a time limit, one torch thread
# per process; re-running resumes every stage from OUT/checkpoint/. On a GPU add DEVICE=cuda
# (and longer limits).
#   ./scripts/train-default-bundle.sh speech|music CORPUS OUT [PACKED]    AudioLM bundles
#   ./scripts/train-default-bundle.sh wavenet|vocoder CORPUS OUT [PACKED] WaveNet continuation
#                                                                         / mel vocoder
# (shipped as: speech, music; wavenet-music (wavenet on the music corpus); wavenet-vocoder
# (vocoder on the speech corpus))
# INIT_DECODER=BUNDLE starts the mel codec's decoder from another bundle's (the music bundle
# starts from the speech one: `train mel-codec --init-decoder`).
# CORPUS: a corpus folder from `audiogen-studio corpus speech|music DIR` (the shipped speech
# LMs trained on `corpus speech --minutes 150`: the same voices and splits as the default 35
# minutes, and enough data that the coarse and fine LMs learn below chance; its test split, with
# held-out voices or instruments, is what the evaluation scores); OUT: the training bundle
# folder (checkpoints and token caches live there); PACKED: where the shipped copy goes
# (default models/KIND), float16 weights, with its model card and measured quality.
# Stage times (seconds): SEMANTIC_SECONDS, CODEC_MINUTES, LM_SECONDS, WAVENET_SECONDS;
# GAN_MINUTES (unset: none) adds the codec decoder's GAN phase; GROWN_DATA (music, unset: none)
# a coarse-LM phase on a grown corpus's tokens (on a GPU); GPU_DECODER_SECONDS (unset:
# none) a reconstruction phase at batch 64 on the GPU; FINETUNE_DATA (wavenet/vocoder, unset:
# none) a fine-tuning phase on that corpus; MIXED_DECODER_SECONDS the decoder's phase on the
# codebooks generation decodes; GPU_FINETUNE_SECONDS (wavenet/vocoder) and
# GPU_MIXED_DECODER_SECONDS (speech, music) phases at large batch on the GPU.
set -euo pipefail
usage="usage: train-default-bundle.sh speech|music|wavenet|vocoder CORPUS OUT [PACKED]"
KIND=${1:?$usage}
DATA=${2:?$usage}
OUT=${3:?$usage}
cd "$(dirname "$0")/.."
PACKED=${4:-models/$KIND}
AG=".venv/bin/audiogen-studio"
DEVICE=${DEVICE:-cpu}

if [ "$KIND" = wavenet ] || [ "$KIND" = vocoder ]; then
  # the `default` WaveNet: 20 layers x 2 stacks, 48/96/48 channels (sized for sample-by-sample
  # generation on a 2-core CPU; its speed is in benchmarks/ and the README)
  mel=(); [ "$KIND" = vocoder ] && mel=(--mel)
  $AG train wavenet --data "$DATA" --out "$OUT" --name "$(basename "$PACKED")" "${mel[@]}" --config default \
    --batch 4 --crop 2000 --steps 200000 --time-limit "${WAVENET_SECONDS:-6600}" \
    --val-every 500 --save-every 250 --threads 1 --device "$DEVICE" --no-progress
  src="$OUT"
  # FINETUNE_DATA=CORPUS (FINETUNE_SECONDS, default 2400) goes on from there with --init-from and
  # crops of 6,000 samples, which spend less of each step on the receptive field's context than
  # 2,000 (README): wavenet-vocoder 0.1.1 is 0.1.0 after 40 min of it on the 150-min speech corpus
  if [ -n "${FINETUNE_DATA:-}" ]; then
    $AG train wavenet --data "$FINETUNE_DATA" --out "$OUT-finetune" --name "$(basename "$PACKED")" \
      --init-from "$OUT" --batch 2 --crop 6000 --lr 5e-4 --steps 200000 \
      --time-limit "${FINETUNE_SECONDS:-2400}" --val-every 250 --save-every 250 --threads 1 \
      --device "$DEVICE" --no-progress
    src="$OUT-finetune"
  fi
  # GPU_FINETUNE_SECONDS=S (with DEVICE=cuda) goes on at batch 16 with 8,000-sample crops in
  # bfloat16 autocast: S seconds at rate 1e-3, then S/2 at 5e-4 (fresh Adam state each time).
  # wavenet-vocoder 0.1.2 is 0.1.1 after 4,034 + 3,462 such steps on an H100 (420 s beside two
  # other runs, then 225 s beside one; a fresh 42-min random subset of FINETUNE_DATA's train
  # split each time, `corpus subset --minutes 42 [--exclude]`, as --data for a GPU machine
  # that takes 64 MiB): ESTOI 0.37 -> 0.52 on the held-out clips (README)
  if [ -n "${GPU_FINETUNE_SECONDS:-}" ]; then
    gpu=(--data "${FINETUNE_DATA:-$DATA}" --name "$(basename "$PACKED")" --batch 16 --crop 8000 --amp
      --steps 200000 --val-every 1000 --save-every 1000 --threads 4 --device "$DEVICE" --no-progress)
    $AG train wavenet "${gpu[@]}" --out "$OUT-gpu1" --init-from "$src" --lr 1e-3 \
      --time-limit "$GPU_FINETUNE_SECONDS"
    $AG train wavenet "${gpu[@]}" --out "$OUT-gpu2" --init-from "$OUT-gpu1" --lr 5e-4 \
      --time-limit "$((GPU_FINETUNE_SECONDS / 2))"
    src="$OUT-gpu2"
  fi
  $AG models card "$src"
  $AG models pack "$src" "$PACKED" --half
  exit 0
fi
common=(--data "$DATA" --bundle "$OUT" --threads 1 --device "$DEVICE" --no-progress)
# The LMs model 3 coarse + 5 fine of the codec's 12 codebooks (8 x 1024 at 50 Hz = 4 kbit/s):
# the last 4 codebooks lowered validation mel L1 by 0.01 only, and fewer tokens per frame
# keep generation faster than real time on 2 CPU cores.
layout=(--coarse-quantizers 3 --fine-quantizers 5)

# 1. semantic tokenizer and acoustic codec are independent: side by side
# music (0.5.0): semantic tokens from pitch-class features, so they carry harmony (nothing to
# train: k-means of 12 pitch classes, energy and onset); speech: the HuBERT-style encoder
if [ "$KIND" = music ]; then
  $AG train semantic "${common[@]}" --name "$KIND" --encoder chroma --kmeans-seconds 1200 &
else
  $AG train semantic "${common[@]}" --name "$KIND" --config default --steps 3000 --batch 8 \
    --crop-seconds 2 --kmeans-seconds 300 --time-limit "${SEMANTIC_SECONDS:-3000}" --save-every 250 &
fi
semantic=$!
init=(); [ -n "${INIT_DECODER:-}" ] && init=(--init-decoder "$INIT_DECODER")
# the decoder trains at a constant rate; re-runs at lower rates polish it (each resumes)
codec=(--name "$KIND" --config default --batch 16 --segment 0.64 --val-every 500 --save-every 250)
$AG train mel-codec "${common[@]}" "${codec[@]}" --minutes "${CODEC_MINUTES:-100}" "${init[@]}"
$AG train mel-codec "${common[@]}" "${codec[@]}" --minutes 25 --lr 1.5e-4
$AG train mel-codec "${common[@]}" "${codec[@]}" --minutes 20 --lr 5e-5
$AG train mel-codec "${common[@]}" "${codec[@]}" --minutes 12 --lr 2e-5
# GAN_MINUTES=M adds a GAN phase (an MS-STFT discriminator joins; Vocos). Off by default: on
# the CPU, 1,815 such steps from the shipped speech decoder lowered PESQ-wb 1.87 -> 1.78 and
# raised the re-synthesis' DNSMOS 2.36 -> 2.39 only (README); it wants a GPU's step count.
# It keeps the codebooks, so it may also run after the LMs (their token cache stays valid).
if [ -n "${GAN_MINUTES:-}" ]; then
  $AG train mel-codec "${common[@]}" "${codec[@]}" --minutes "$GAN_MINUTES" --lr 5e-5 \
    --discriminator small
fi
wait $semantic
# GPU_DECODER_SECONDS=S (with DEVICE=cuda) polishes the decoder further at batch 64: speech
# 0.4.2's decoder is 0.4.1's after 8,283 + 9,716 such steps (665 s on an H100, a fresh 42-min
# random subset of the train split each time), which raised PESQ-wb on the 24 test clips from
# 1.86 to 1.91 where the CPU's batch-32 steps had stopped helping (README). --init-codec keeps
# the codebooks, so the LMs' tokens stay valid. (After the semantic stage: both write bundle.json.)
if [ -n "${GPU_DECODER_SECONDS:-}" ]; then
  gpu=(--data "$DATA" --device "$DEVICE" --threads 8 --no-progress --name "$KIND")
  $AG train mel-codec "${gpu[@]}" --bundle "$OUT-gpu-decoder" --init-codec "$OUT" --batch 64 \
    --lr 5e-5 --segment 1 --val-every 1000 --save-every 2000 --time-limit "$GPU_DECODER_SECONDS"
  $AG models adopt "$OUT" "$OUT-gpu-decoder" codec
fi

# 2. the three LMs; the semantic stage first tokenises the corpus into OUT/work/ for the others.
# (The shipped 0.3.0 LMs grew in steps instead: trained on the smaller corpus first, then
# continued on the grown one with `train lm-coarse|lm-fine --init-from PREVIOUS_BUNDLE`; stages
# trained in separate folders are joined with `models adopt`. Their cards list each step.)
# Each keeps the weights of its best validation loss (--keep best: a small corpus is overfitted)
# (all 192x4: the default-size semantic LM overfitted both corpora; the shipped ones stopped by
# patience, music at step 800 and speech at step 1,700)
$AG train lm-semantic "${common[@]}" "${layout[@]}" --size small --window 250 --steps 20000 \
  --batch 16 --time-limit "${LM_SECONDS:-3600}" --save-every 200 --val-every 200 --patience 6 &
lm_semantic=$!
sleep 120  # let it write the token cache the other two read
# music's coarse LM also learns to continue without its semantic tokens (a fifth of the windows
# drop them), for the classifier-free guidance it generates with (step 3). (Music 0.5.0's grew
# instead from 0.4.0's coarse LM: --init-from, 1,816 steps without dropout, then 975 with it.)
dropout=(); [ "$KIND" = music ] && dropout=(--semantic-dropout 0.2)
$AG train lm-coarse "${common[@]}" "${layout[@]}" --size small --window 100 --steps 20000 \
  --batch 16 --time-limit "${LM_SECONDS:-3600}" --save-every 200 --val-every 200 "${dropout[@]}" &
lm_coarse=$!
$AG train lm-fine "${common[@]}" "${layout[@]}" --size small --window 50 --steps 20000 \
  --batch 16 --time-limit "${LM_SECONDS:-3600}" --save-every 200 --val-every 200
wait $lm_semantic $lm_coarse

# 3. tune the per-stage temperatures on the validation split (at request temperature 1 and no
# top-k, the app's and CLI's defaults; greedy fine tokens and a cooler coarse stage won for
# music; ranked by speaker cosine + DNSMOS / key + chroma)
sweep="$OUT/sampling-sweep.json"
.venv/bin/python benchmarks/sampling_sweep.py --model "$OUT" --data "$DATA" --kind "$KIND" \
  --clips 12 --grid - fine=0 semantic=0.8,coarse=0.8,fine=0 semantic=0.8,coarse=0.6,fine=0 \
  semantic=1,coarse=0.6,fine=0 semantic=0.7,coarse=0.6,fine=0 -o "$sweep" > /dev/null
best=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["best_flag"] or "")' "$sweep")
if [ -n "$best" ]; then $AG models card "$OUT" --stage-temperatures "$best"; fi
# prompt adaptation (generation.adaptation; chosen on the validation prompts, figures in the
# cards): speech adapts the coarse LM's top 2 blocks for 12 steps on the prompt's last 2 s and
# keeps 0.35 of the change, decoding the 3 coarse codebooks only (skipping the fine LM pays for
# the steps; its later codes cost more than they add: with the real coarse codes of held-out
# speech the fine LM's lowered speaker cosine); music takes 8 steps on the last 1 s, kept whole
if [ "$KIND" = speech ]; then
  $AG models card "$OUT" --decode-quantizers 3 --adaptation steps=12,lr=8e-4,mix=0.35,blocks=2
  # the codebooks generation decodes: the 3 coarse ones (decode_quantizers above)
  decoded=3; mixed=(--lr 1e-4 --val-every 500); mixed_seconds=3300
else
  # music (0.6.0) samples its coarse stage at 0.7 with guidance 4 and mixes 0.7 of the prompt's
  # semantic-token frequencies in, without prompt adaptation (chosen on the validation prompts,
  # confirmed on 64 test prompts of the grown corpus; figures in the card). 0.5.x adapted the
  # coarse LM (steps=8,lr=1.2e-3,mix=1,blocks=2,seconds=1) with guidance 3 and cache 0.5.
  # 0.6.1 keeps its takes at the prompt's level (--level-match on; the codec renders music
  # ~3 dB softer than its input); 0.6.2 slides a full context by evicting the older half of
  # the KV cache (--context-slide evict: 16 % faster, chroma and key up on every paired run);
  # 0.6.3 keeps to the prompt's beat (--beat-guidance: 2.5x the takes within +-5 % of the
  # prompt's tempo, some chroma given up; strength chosen on 96 validation prompts, 2 seeds).
  $AG models card "$OUT" --adaptation off --stage-temperatures semantic=0.8,coarse=0.7,fine=0 \
    --coarse-guidance 4 --semantic-cache 0.7 --level-match on --context-slide evict \
    --beat-guidance strength=5
  # the codebooks generation decodes: the 3 coarse + 5 fine the LMs model
  decoded=8; mixed=(--lr 2e-4 --segment 1 --val-every 1000); mixed_seconds=2700
fi
# then the codec decoder also learns the codebooks generation decodes (its runs above drew
# 4..12): half the crops from those, half from all 12. Speech 0.4.3 is 0.4.2 after 55 min of it
# on one thread (generated DNSMOS 2.15 -> 2.21 on the test prompts, the 12-codebook codec
# unchanged); music 0.5.1 is 0.5.0 after 45 min on the 200-min corpus (chroma 0.51 -> 0.55;
# README). --init-codec keeps the codebooks, so the LMs' tokens stay valid.
$AG train mel-codec --data "$DATA" --bundle "$OUT-mixed-decoder" --init-codec "$OUT" \
  --name "$KIND" --nq-dropout 0.5 --nq-choices "$decoded" "${mixed[@]}" --batch 16 \
  --save-every 500 --time-limit "${MIXED_DECODER_SECONDS:-$mixed_seconds}" --threads 1 \
  --device "$DEVICE" --no-progress
$AG models adopt "$OUT" "$OUT-mixed-decoder" codec
# GPU_MIXED_DECODER_SECONDS=S (with DEVICE=cuda) goes on with the same mixture at batch 64:
# speech 0.4.4's decoder is 0.4.3's after 7,752 + 5,676 such steps on an H100 (420 s beside
# two other runs, then 225 s beside one; a fresh 42-min random subset of the train split each
# time, as for the vocoder): generated DNSMOS on the test prompts 2.21 -> 2.25 (paired
# +0.04 +/- 0.03; README)
if [ -n "${GPU_MIXED_DECODER_SECONDS:-}" ]; then
  $AG train mel-codec --data "$DATA" --bundle "$OUT-gpu-mixed-decoder" --init-codec "$OUT" \
    --name "$KIND" --nq-dropout 0.5 --nq-choices "$decoded" --lr 5e-5 --batch 64 \
    --val-every 1000 --save-every 2000 --time-limit "$GPU_MIXED_DECODER_SECONDS" --threads 8 \
    --device "$DEVICE" --no-progress
  $AG models adopt "$OUT" "$OUT-gpu-mixed-decoder" codec
fi

# GROWN_DATA=CORPUS (music; with DEVICE=cuda) fine-tunes the coarse LM on the tokens of a grown
# corpus (same held-out instruments) at batch 64: music 0.6.0's coarse LM is 0.5.1's after 8,000
# such steps (303 s on an H100 beside another run) on the tokens of `corpus music --minutes 1000`
# (13.2 h, 2.37 M frames; a 5.6 MB xz archive with only the coarse rows kept carries them to a GPU
# machine), keeping its best validation loss (3.14 -> 2.44 nats at step 7,000; README).
if [ -n "${GROWN_DATA:-}" ]; then
  $AG train tokens --data "$GROWN_DATA" --bundle "$OUT" --out "$OUT-grown-tokens" --no-progress
  rm -rf "$OUT-grown"; mkdir -p "$OUT-grown"
  cp "$OUT"/bundle.json "$OUT"/*.safetensors "$OUT-grown/"
  $AG train lm-coarse --data "$OUT-grown-tokens" --bundle "$OUT-grown" --init-from "$OUT" \
    --semantic-dropout 0.2 --batch 64 --lr 2e-4 --steps 8000 --val-every 250 --save-every 1000 \
    --threads 4 --device "$DEVICE" --no-progress
  $AG models adopt "$OUT" "$OUT-grown" lm_coarse
fi

# 4. measure on held-out audio, record the figures in the bundle, pack it for shipping
report="$OUT/quality.json"
if [ "$KIND" = speech ]; then corpora=(--speech "$DATA" --music ""); else corpora=(--music "$DATA" --speech ""); fi
.venv/bin/python benchmarks/quality.py --model "$OUT" "${corpora[@]}" --clips 12 -o "$report"
$AG models card "$OUT" --quality "$report" --measured-with \
  "benchmarks/quality.py --model $KIND ${corpora[*]/$DATA/CORPUS} --clips 12"
$AG models pack "$OUT" "$PACKED" --half

"""Model layer: torch ``nn.Module``s only (WaveNet, codec, RVQ, semantic encoder, token LMs)."""

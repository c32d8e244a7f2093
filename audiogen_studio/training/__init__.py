"""Training layer: corpora builders, datasets and trainers (no Qt)."""

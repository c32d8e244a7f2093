"""Engine layer (no Qt): model bundles and their registry, generation pipelines, `Engine.stream`."""

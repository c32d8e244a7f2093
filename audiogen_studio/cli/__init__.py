"""Command-line interface: ``audiogen-studio <command> ...`` (argparse, progress with tqdm).

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=run`` with ``run(args) -> int``.
"""

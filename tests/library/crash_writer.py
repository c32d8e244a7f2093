"""A library writer for the crash-safety test: adds (and edits) takes until it is killed.

Usage: ``python crash_writer.py LIBRARY_ROOT SEED``. Prints ``ready`` once the library is
open, then ``ok <uid>`` after every take whose :meth:`add_take` returned (i.e. committed).
"""

from __future__ import annotations

import sys

import numpy as np

from audiogen_studio.audio.clip import Clip
from audiogen_studio.library import TakeInfo, TakeLibrary


def main() -> None:
    root, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    lib = TakeLibrary(root)  # fsync on: the real write path
    print("ready", flush=True)
    done: list[str] = []
    i = 0
    while True:
        seconds = float(rng.uniform(0.3, 2.5))
        channels = int(rng.integers(1, 3))
        n = int(seconds * 16000)
        x = rng.standard_normal((channels, n)).astype(np.float32) * float(rng.uniform(0.05, 0.3))
        x[:, : n // 2] += np.sin(np.arange(n // 2) * float(rng.uniform(0.01, 0.3)))
        tags = [str(t) for t in rng.choice(["rain", "bell", "pad", "voice"], 2)]
        info = TakeInfo(engine="wavenet", model="crash", seed=i, name=f"w{seed}-{i}", tags=tags)
        entry = lib.add_take(Clip(x, 16000), info)
        done.append(entry.uid)
        print(f"ok {entry.uid}", flush=True)
        if i % 3 == 2:
            lib.update(str(rng.choice(done)), rating=int(rng.integers(1, 6)), notes=f"edit {i}")
        if i % 5 == 4:
            lib.delete(str(rng.choice(done)))
        i += 1


if __name__ == "__main__":
    main()

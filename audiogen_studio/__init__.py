"""AudioGen Studio: continue your own audio with AudioLM and WaveNet, in a desktop editor.

Layers (DESIGN.md §2), dependencies pointing down only::

    cli -> app -> training -> engine -> models -> audio

Qt lives in :mod:`audiogen_studio.app` alone; sounddevice in :mod:`audiogen_studio.audio.devices`.
"""

__version__ = "0.1.0"

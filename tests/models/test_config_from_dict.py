"""models/checkpoint.config_from_dict: the one body of every model config's ``from_dict``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from audiogen_studio.models.checkpoint import config_from_dict
from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, CodecConfig
from audiogen_studio.models.lm import LMConfig
from audiogen_studio.models.semantic import TokenizerConfig


@dataclass(frozen=True)
class _Toy:
    size: int
    name: str = "toy"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")


def test_rebuilds_the_dataclass_and_names_each_problem() -> None:
    assert config_from_dict(_Toy, {"size": 3}, "toy config") == _Toy(3)
    with pytest.raises(ValueError, match=r"^a toy config must be a JSON object, got list$"):
        config_from_dict(_Toy, [1], "toy config")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown toy config keys: a, b$"):
        config_from_dict(_Toy, {"size": 1, "b": 0, "a": 0}, "toy config")
    with pytest.raises(ValueError, match=r"^bad toy config: .*size"):
        config_from_dict(_Toy, {}, "toy config")
    # the dataclass's own checks pass through as they are
    with pytest.raises(ValueError, match=r"^size must be at least 1, got 0$"):
        config_from_dict(_Toy, {"size": 0}, "toy config")


def test_model_configs_keep_their_messages() -> None:
    tiny = NAMED_CODEC_CONFIGS["tiny"]
    assert CodecConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match=r"^an LM config must be a JSON object, got str$"):
        LMConfig.from_dict("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown tokenizer config keys: colour$"):
        TokenizerConfig.from_dict({"colour": 1})

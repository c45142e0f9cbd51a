"""medstream trainer: a small multimodal model trained with DeepSpeed, fed
only by the data engine. ``python -m trainer --help`` for the launcher; see
``trainer/README.md`` for the map of modules."""

from trainer.config import ModelConfig, RunConfig, TrainConfig, load_config
from trainer.model import MultimodalModel

__all__ = ["ModelConfig", "MultimodalModel", "RunConfig", "TrainConfig", "load_config"]

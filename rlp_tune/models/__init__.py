"""Model registry: one file per family, each registering its names. `list_models()` shows them
("timm:" stands for every "timm:<name>", any timm architecture)."""
from .base import MODELS, ModelInputError, TapModel, create_model, list_models, register_model, resolve_taps
from . import mlp as _mlp  # noqa: F401  (each import registers its family)
from . import wrn as _wrn  # noqa: F401
from . import vgg as _vgg  # noqa: F401
from . import resnet_cifar as _resnet  # noqa: F401
from . import vit as _vit  # noqa: F401
from . import timm_any as _timm_any  # noqa: F401  ("timm:<name>": any timm architecture)

__all__ = ["MODELS", "ModelInputError", "TapModel", "create_model", "list_models", "register_model", "resolve_taps"]

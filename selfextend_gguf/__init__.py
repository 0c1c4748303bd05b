"""selfextend-gguf: exact Self-Extend (Jin et al., ICML 2024) for GGUF models on llama.cpp."""

from .llama import LLAMA_DEFAULT_SEED, Llama
from .model_path import default_model_path
from .self_extend import SelfExtend

__version__ = "0.1.0"
__all__ = ["Llama", "LLAMA_DEFAULT_SEED", "SelfExtend", "default_model_path", "__version__"]

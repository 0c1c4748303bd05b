"""selfextend-gguf: exact Self-Extend (Jin et al., ICML 2024) for GGUF models on llama.cpp."""

# before anything loads the extension: a build for another CPU gets a message, not SIGILL
from .engine import cpu_check

cpu_check.check()

from ._core import LlamaCppError
from .apps.grammar import LlamaGrammar
from .llama import LLAMA_DEFAULT_SEED, Llama
from .models.model_path import default_model_path
from .engine.prompt_cache import LlamaDiskCache, LlamaRAMCache
from .settings.self_extend import SelfExtend
from .engine.system_info import system_info
from .tuning import tune

__version__ = "0.1.0"
LlamaCache = LlamaRAMCache   # llama_cpp's older name
__all__ = ["Llama", "LlamaCache", "LlamaCppError", "LlamaDiskCache", "LlamaGrammar", "LlamaRAMCache",
           "LLAMA_DEFAULT_SEED", "SelfExtend", "default_model_path", "system_info", "tune", "__version__"]

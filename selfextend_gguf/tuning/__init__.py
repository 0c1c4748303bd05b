"""Choosing Self-Extend's G and W on the user's own model (`selfextend-gguf tune`)."""

from .tune import TuneResult, tune

__all__ = ["TuneResult", "tune"]

"""Importing this package registers every model; one model family per module."""

from impl.models import cnn, lstm, mlp, transformer

__all__ = ["cnn", "lstm", "mlp", "transformer"]

"""Importing this package registers every model; one model family per module."""

from impl.models import (
    attention,
    batchnorm,
    binary_mlp,
    cnn,
    fusion,
    linear,
    lstm,
    mlp,
    regression_mlp,
    resnet_transfer,
    rnn,
    seq2seq,
    transformer,
    transformer_lm,
)

__all__ = [
    "attention",
    "batchnorm",
    "binary_mlp",
    "cnn",
    "fusion",
    "linear",
    "lstm",
    "mlp",
    "regression_mlp",
    "resnet_transfer",
    "rnn",
    "seq2seq",
    "transformer",
    "transformer_lm",
]

"""Recurrent layers that attacks can differentiate on a GPU: cuDNN has no backward pass for an RNN in eval mode
(pytorch/pytorch#5878), which is exactly what an attack on a victim in eval mode needs, so there cuDNN is left out."""

from __future__ import annotations

import torch
from torch import nn


def cudnn_cannot_backward(rnn: nn.Module, h: torch.Tensor) -> bool:
    """Whether this call would reach cuDNN's RNN in eval mode with a gradient wanted."""
    return h.is_cuda and not rnn.training and torch.is_grad_enabled() and torch.backends.cudnn.enabled


def run_rnn(rnn: nn.Module, h: torch.Tensor):
    """`rnn(h)`, with cuDNN off where it cannot give the gradient (the native kernels give the same numbers)."""
    if cudnn_cannot_backward(rnn, h):
        with torch.backends.cudnn.flags(enabled=False):
            return rnn(h)
    return rnn(h)

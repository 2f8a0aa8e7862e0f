"""Self-checks of a victim at load, after AutoAttack's flags: what would make attack numbers on it meaningless.

- `gradient`: the loss's gradient w.r.t. the waveform is finite and not zero (else gradient attacks stall and
  their failure reads as robustness);
- `logits`: the output is not probabilities or log-probabilities (a softmax head flattens margins, so C&W-style
  and DLR losses misbehave);
- `deterministic`: two forwards in eval mode agree (dropout left on, or randomness inside, needs EOT);
- `padding`: a clip alone and the same clip zero-padded, as in a batch with a longer one, get the same output.
  staa-ser never pads (it batches clips of one length), so this one informs about deployment, not about its numbers.

Each check is `{"ok": bool, "detail": str}`; `flags(checks)` lists the failed ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHECKS = ("gradient", "logits", "deterministic", "padding")
INFORMATIVE = {"padding"}  # failed, it says something about the model, not about staa-ser's numbers on it


def _probe(sample_rate: int, seed: int) -> torch.Tensor:
    """One second of a voiced-like signal (a harmonic tone in noise), two clips: a victim's gradient on pure
    silence can legitimately be tiny."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(sample_rate)) / sample_rate
    f0 = torch.tensor([[140.0], [220.0]])
    tone = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 6))
    return (0.1 * tone + 0.02 * torch.randn(2, t.numel(), generator=g)).float()


def check_victim(model: nn.Module, sample_rate: int, n_classes: int, *, device="cpu", seed: int = 0) -> dict:
    """Run the checks on `model` (left in eval mode). Raises ValueError when the output is not `[B, n_classes]`."""
    model.eval()
    x = _probe(sample_rate, seed).to(device)
    checks = {}
    x.requires_grad_(True)
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.shape != (len(x), n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model maps a [2, {x.shape[1]}] waveform batch to {shape}, not [2, {n_classes}] logits")
    (grad,) = torch.autograd.grad(F.cross_entropy(out, out.detach().argmax(1)), x, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all():
        checks["gradient"] = {"ok": False, "detail": "the waveform gets no finite gradient (a non-differentiable step)"}
    else:
        size = float(grad.abs().max())
        checks["gradient"] = {
            "ok": size > 0,
            "detail": f"largest |dloss/dx| {size:.2e}" + ("" if size > 0 else ": zero, gradient attacks cannot move"),
        }
    out = out.detach()
    if bool(((out >= 0) & (out <= 1)).all()) and torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-4):
        checks["logits"] = {"ok": False, "detail": "the output rows are probabilities (softmax), not logits"}
    elif torch.allclose(out.exp().sum(1), torch.ones(len(out)), atol=1e-4):
        checks["logits"] = {"ok": False, "detail": "the output rows are log-probabilities (log-softmax), not logits"}
    else:
        checks["logits"] = {"ok": True, "detail": "unnormalised scores"}
    with torch.no_grad():
        again = model(x.detach())
        diff = float((again - out).abs().max())
        checks["deterministic"] = {"ok": diff <= 1e-4, "detail": f"two eval forwards differ by {diff:.2e}"}
        alone = model(x[:1].detach())
        try:
            padded = model(F.pad(x.detach(), (0, x.shape[1] // 4)))[:1]
        except RuntimeError as err:
            checks["padding"] = {"ok": False, "detail": f"fails on a longer clip ({str(err)[:80]})"}
            return checks
        diff = float((alone - padded).abs().max())
        same = bool((alone.argmax(1) == padded.argmax(1)).all())
        checks["padding"] = {
            "ok": diff <= 1e-3,
            "detail": f"25% zero padding changes the logits by {diff:.2e}"
            + ("" if same else " and the prediction")
            + ("" if diff <= 1e-3 else "; staa-ser batches clips of one length, so its numbers are unaffected"),
        }
    return checks


def flags(checks: dict | None, *, informative: bool = True) -> list[str]:
    """`name: detail` of every failed check (`informative=False`: only those that make attack numbers unreliable)."""
    return [
        f"{name}: {c['detail']}"
        for name, c in (checks or {}).items()
        if not c["ok"] and (informative or name not in INFORMATIVE)
    ]

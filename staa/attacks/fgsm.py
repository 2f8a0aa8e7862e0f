"""FGSM (Goodfellow et al., 2015): one signed-gradient step of size eps in l-inf."""

from __future__ import annotations

from staa.attacks.base import Attack, check_eps


class FGSM(Attack):
    r"""FGSM: one signed-gradient step of size eps.

    Paper: Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> FGSM(model, eps=0.002)(x, y)
    """

    name = "fgsm"
    kind = "single_step"

    def __init__(self, model, eps: float = 0.03, **kw):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)

    def perturb(self, x, y):
        return x + self.eps * self.loss_gradient(x, y).sign()

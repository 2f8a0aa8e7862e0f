"""Training victims, clean (`victim`) and adversarially (`adversarial`), in one process or under torchrun."""

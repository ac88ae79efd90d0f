"""scikit-learn digits (8x8, 17 levels), class-conditional U-Net: D3PM gaussian, T = 1000."""

from experiments.configs import base


def get_config():
    c = base.d3pm(base.digits(base.get_base_config()), "gaussian")
    c.loss.aux_weight = 0.001
    c.sample.steps = 1000
    return c

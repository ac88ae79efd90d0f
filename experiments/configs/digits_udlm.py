"""scikit-learn digits (8x8, 17 levels), class-conditional U-Net: UDLM (uniform noise)."""

from experiments.configs import base


def get_config():
    return base.udlm(base.digits(base.get_base_config()))

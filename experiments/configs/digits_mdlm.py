"""scikit-learn digits (8x8, 17 levels), class-conditional U-Net: MDLM."""

from experiments.configs import base


def get_config():
    return base.mdlm(base.digits(base.get_base_config()))

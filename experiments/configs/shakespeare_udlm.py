"""Tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: udlm."""

from experiments.configs import base


def get_config():
    return base.udlm(base.shakespeare(base.get_base_config()))

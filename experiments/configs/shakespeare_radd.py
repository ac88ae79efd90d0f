"""Tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: radd."""

from experiments.configs import base


def get_config():
    return base.radd(base.shakespeare(base.get_base_config()))

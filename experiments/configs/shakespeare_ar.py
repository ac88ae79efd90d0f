"""Tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: ar."""

from experiments.configs import base


def get_config():
    return base.ar(base.shakespeare(base.get_base_config()))

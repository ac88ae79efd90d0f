"""Tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: sedd_uniform."""

from experiments.configs import base


def get_config():
    return base.sedd_uniform(base.shakespeare(base.get_base_config()))

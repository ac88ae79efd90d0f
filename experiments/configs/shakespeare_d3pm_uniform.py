"""Tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: D3PM uniform, T = 1000."""

from experiments.configs import base


def get_config():
    return base.d3pm(base.shakespeare(base.get_base_config()), "uniform")

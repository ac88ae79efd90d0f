"""text8, the papers' setting (12 x 768, L = 256, batch 512, 1M steps): D3PM absorbing."""

from experiments.configs import base


def get_config():
    return base.d3pm(base.text8(base.get_base_config()), "absorbing")

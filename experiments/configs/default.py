"""The README default: tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: mdlm."""

from experiments.configs import base


def get_config():
    return base.mdlm(base.shakespeare(base.get_base_config()))

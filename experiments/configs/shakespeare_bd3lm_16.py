"""Tiny Shakespeare (text8 alphabet), shared 4 x 128 CPU model: BD3-LM, block size 16.

A time-free block-causal DiT trained with the block masked ELBO (one pass over
[x_t ; x0]); validation bits/char is its NELBO under the full schedule.
"""

from experiments.configs import base


def get_config():
    return base.bd3lm(base.shakespeare(base.get_base_config()), block_size=16)

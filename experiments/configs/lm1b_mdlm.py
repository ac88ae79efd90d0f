"""LM1B, MDLM: 12 x 768, L = 128, batch 512, 1M steps, GPT-2 tokens.

Needs nanoGPT-style token files of LM1B: --config.data.path=DIR with DIR/train.bin,
DIR/val.bin (MDLM's paper used the bert-base-uncased tokenizer; ddjax ships GPT-2's).
"""

from experiments.configs import base


def get_config():
    c = base.mdlm(base.openwebtext(base.get_base_config()))
    c.data.name = "lm1b"
    c.data.seq_len = 128
    c.model.max_len = 128
    return c

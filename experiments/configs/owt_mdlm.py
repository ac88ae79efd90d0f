"""OpenWebText, GPT-2 tokenizer, L = 1024, 12 x 768, batch 512, 1M steps: mdlm.

Needs nanoGPT-style token files: --config.data.path=DIR with DIR/train.bin, DIR/val.bin.
"""

from experiments.configs import base


def get_config():
    return base.mdlm(base.openwebtext(base.get_base_config()))

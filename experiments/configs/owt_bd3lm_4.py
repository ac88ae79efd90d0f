"""OpenWebText, GPT-2 tokenizer, L = 1024, 12 x 768, batch 512, 1M steps: BD3-LM, block 4.

The paper's model size and recipe (time-free block-causal DiT, one pass over [x_t ; x0],
clipped mask-rate schedule in training). The clipping range is fixed here at
U[0.3, 0.8]; BD3-LM searches it for the lowest-variance range at each validation (not
implemented: set --config.loss.mask_rate_min / mask_rate_max), and fine-tunes an MDLM
checkpoint where this config trains from scratch. Launch: launch/owt_bd3lm.sh 4 WORKDIR.

Needs nanoGPT-style token files: --config.data.path=DIR with DIR/train.bin, DIR/val.bin.
"""

from experiments.configs import base


def get_config():
    c = base.openwebtext(base.get_base_config())
    return base.bd3lm(c, block_size=4, mask_rate=(0.3, 0.8))

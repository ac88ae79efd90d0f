"""The README default: tiny Shakespeare (text8 alphabet), a 4 x 128 CPU model trained as
a block diffusion model (BD3-LM) with blocks of 2 characters, sampled block by block
with the exact KV cache and first-hitting decoding inside each block.

Chosen for the 10-minute budget of a 2-core CPU: on that budget the full-sequence masked
model (``shakespeare_mdlm``) stays above 3.2 bits/char and writes about a quarter real
words, while short blocks learn from the clean prefix as an AR model does. Measured
figures (time, bits/char, real words) are in README.md. The shared-size rows of the
tables use the ``shakespeare_*`` configs.
"""

from experiments.configs import base


def get_config():
    c = base.shakespeare(base.get_base_config())
    # BD3-LM's clipped mask rates (lower-variance training; validation uses the full ELBO)
    c = base.bd3lm(c, block_size=2, mask_rate=(0.45, 0.95))
    c.data.seq_len = 64
    c.model.max_len = 64
    c.optim.update(lr=2e-3, warmup_steps=50)
    c.train.update(batch_size=32, num_steps=1200, eval_every=400, log_every=100)
    # first_hitting decodes one position per call: the model's exact law in each block
    c.sample.update(sampler="first_hitting", steps=2, num_samples=8)
    return c

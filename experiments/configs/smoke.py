"""Smoke test: a 2 x 32 MDLM on tiny Shakespeare that trains in seconds on the CPU."""

from experiments.configs import base


def get_config():
    c = base.mdlm(base.shakespeare(base.get_base_config()))
    c.data.seq_len = 32
    c.model.update(num_layers=2, width=32, num_heads=2, max_len=32)
    c.optim.update(lr=3e-3, warmup_steps=5, ema_decay=0.9)
    c.train.update(batch_size=16, num_steps=40, checkpoint_every=10, log_every=10)
    c.eval.update(num_time_samples=2, batch_size=64, max_batches=4, during_train_batches=2)
    c.sample.update(steps=16, num_samples=2)
    return c

"""CIFAR-10 (32x32x3, 256 levels), D3PM discretized Gaussian, T = 1000, hybrid loss.

Needs the python-pickle batches: --config.data.path=/path/to/cifar-10-batches-py.
A GPU-scale setting (U-Net 128 channels, batch 128); D3PM reports 3.435 bits/dim.
"""

from experiments.configs import base


def get_config():
    c = base.d3pm(base.get_base_config(), "gaussian")
    c.data.update(name="cifar10", vocab_size=256, seq_len=32 * 32 * 3)
    c.model.update(
        name="unet",
        base_channels=128,
        channel_mults=(1, 2, 2, 2),
        num_classes=0,
        dropout=0.1,
        in_channels=3,
    )
    c.loss.aux_weight = 0.001
    c.optim.update(lr=2e-4, warmup_steps=5000, decay="constant", ema_decay=0.9999)
    c.train.update(
        batch_size=128,
        num_steps=1_500_000,
        checkpoint_every=10_000,
        log_every=1000,
        eval_every=50_000,
    )
    c.eval.update(num_time_samples=4, batch_size=256, during_train_batches=4)
    c.sample.update(steps=1000, num_samples=64)
    return c

"""Shared config defaults and the model sizes that the per-row configs pick from.

Every key that any part of ``experiments`` reads is defined here, so a typo in a
``--config.KEY=VALUE`` override is an error that lists the valid keys.
"""

from __future__ import annotations

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
    """All keys with defaults (a masked diffusion model on tiny Shakespeare, CPU size)."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "shakespeare"  # shakespeare | text8 | file | owt | lm1b | digits | cifar10
    c.data.path = ""  # local file or folder; '' = bundled copy / download (text8)
    c.data.mode = "text8"  # text tokenizer: text8 (27 symbols) | raw (characters) | gpt2
    c.data.download = True  # text8 only: download when no path is given
    c.data.seq_len = 128
    c.data.vocab_size = 0  # images only: number of pixel levels
    c.data.eval_fraction = 0.1  # images only: held-out fraction

    c.model = ml_collections.ConfigDict()
    c.model.name = "dit"  # dit | ar | unet
    c.model.num_layers = 4
    c.model.width = 128
    c.model.num_heads = 4
    c.model.max_len = 128
    c.model.mlp_ratio = 4
    c.model.time_conditioning = True
    c.model.num_classes = 0  # > 0: class-conditional (id num_classes is the null class)
    c.model.dtype = "float32"  # float32 | bfloat16 (matmuls)
    c.model.dropout = 0.0
    c.model.remat = False
    c.model.base_channels = 32  # unet
    c.model.channel_mults = (1, 2)  # unet
    c.model.in_channels = 1  # unet: colour channels per pixel (3 for CIFAR-10)

    c.process = ml_collections.ConfigDict()
    # none | masking | uniform | marginal (noise towards the training tokens' marginals) |
    # d3pm_absorbing | d3pm_uniform | d3pm_gaussian, or a user's builder as an import path
    # 'package.module:builder', builder(process_cfg, data) -> process
    c.process.name = "masking"
    c.process.schedule = "loglinear"  # loglinear | linear | cosine | polynomial | geometric
    c.process.schedule_eps = 1e-3
    c.process.schedule_power = 1.0
    c.process.num_steps = 1000  # D3PM T
    c.process.bandwidth = 0  # D3PM Gaussian band (0 = none)

    c.loss = ml_collections.ConfigDict()
    # masked_elbo | score_entropy | uniform_elbo | d3pm_hybrid | d3pm_vb | any_order_nll | dfm | ar
    # | block_masked_elbo, or a user's ddjax.training.Loss as an import path 'package.module:NAME'
    c.loss.name = "masked_elbo"
    c.loss.plugin = False  # the papers' plug-in posterior (UDLM, D3PM)
    c.loss.aux_weight = 0.01  # D3PM hybrid cross-entropy weight
    c.loss.antithetic = True  # stratified noise levels over the batch
    c.loss.scale_by_sigma = True  # SEDD absorb: log-score offset by -log(expm1(sigma) K)
    c.loss.t_min = 1e-5
    # block_masked_elbo (BD3-LM): positions per block, also the DiT's attention blocks
    # (0 = not a block model); must divide data.seq_len
    c.loss.block_size = 0
    # BD3-LM's clipped schedule for training: mask rates 1 - alpha(t) ~ U[min, max];
    # (0, 1) is the ordinary uniform time. Validation always uses the full schedule.
    c.loss.mask_rate_min = 0.0
    c.loss.mask_rate_max = 1.0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.optim.decay = "cosine"  # constant | cosine
    c.optim.final_lr_frac = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 1.0  # global norm; 0 = off
    c.optim.ema_decay = 0.999  # 0 = no averaging

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32  # global, over all devices and hosts
    c.train.num_steps = 1000
    c.train.grad_accum = 1
    c.train.log_every = 100
    c.train.eval_every = 0  # 0 = only at the end
    c.train.checkpoint_every = 250
    c.train.max_to_keep = 2
    c.train.async_checkpoint = True
    c.train.label_dropout = 0.1  # class-conditional models: rate of the null class
    c.train.fsdp = False  # shard large parameters over 'data' instead of replicating
    c.train.tensorboard = True
    c.train.final_eval = True

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "valid"  # valid | test
    c.eval.num_time_samples = 4  # noise levels per sequence (stratified)
    c.eval.batch_size = 128
    c.eval.max_batches = 0  # 0 = the whole split
    c.eval.during_train_batches = 4  # evals every train.eval_every steps use this many
    c.eval.use_ema = True
    c.eval.seed = 1

    c.sample = ml_collections.ConfigDict()
    c.sample.sampler = "ancestral"  # any name in ddjax.samplers.SAMPLERS
    c.sample.steps = 128
    c.sample.num_samples = 3
    c.sample.temperature = 1.0
    c.sample.seed = 2
    c.sample.prompt = ""  # text: a prefix held fixed
    c.sample.template = ""  # text: e.g. "to be or ____ to be"; underscores are free
    c.sample.class_label = -1  # class-conditional models: -1 cycles over the classes
    c.sample.guidance = "none"  # none | cfg (classifier-free, needs num_classes > 0)
    c.sample.gamma = 1.0  # guidance strength (0: unconditional, 1: conditional)
    # block diffusion (masking): positions per block, sample.sampler inside each block with
    # sample.steps per block; 0 = the model's block size (loss.block_size), else the
    # whole sequence at once. With the model's block size the exact KV cache is used.
    c.sample.block_size = 0
    c.sample.eos_id = -1  # masking: stop each sample after its first EOS (-1 = off)
    c.sample.threshold = 0.0  # confidence: Fast-dLLM threshold decoding (0 = off)
    # any other keyword option of the sampler, e.g. --config.sample.options.eta=0.02
    # (remdm); checked against the sampler's signature before training starts
    c.sample.options = ml_collections.ConfigDict()
    return c


# -- shared sizes -----------------------------------------------------------------


def shakespeare(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The small CPU setting shared by every shakespeare_* row: 4 x 128, L = 128, B = 32."""
    c.data.name = "shakespeare"
    c.data.mode = "text8"
    c.data.seq_len = 128
    c.model.update(num_layers=4, width=128, num_heads=4, max_len=128)
    c.optim.update(lr=1e-3, warmup_steps=100, decay="cosine", ema_decay=0.999)
    c.train.update(batch_size=32, num_steps=1000, checkpoint_every=250, log_every=100)
    c.eval.update(num_time_samples=4, batch_size=128)
    c.sample.update(steps=128, num_samples=3)
    return c


def text8(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The papers' text8 setting: 12 layers x 768, L = 256, batch 512, 1M steps."""
    c.data.name = "text8"
    c.data.mode = "text8"
    c.data.seq_len = 256
    c.model.update(num_layers=12, width=768, num_heads=12, max_len=256, dropout=0.1)
    c.optim.update(lr=3e-4, warmup_steps=2500, decay="constant", ema_decay=0.9999, weight_decay=0.0)
    c.train.update(
        batch_size=512,
        num_steps=1_000_000,
        checkpoint_every=10_000,
        log_every=1000,
        eval_every=50_000,
        max_to_keep=3,
    )
    c.eval.update(num_time_samples=8, batch_size=512, during_train_batches=8)
    c.sample.update(steps=1000, num_samples=8)
    return c


def openwebtext(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """OpenWebText with the GPT-2 tokenizer, L = 1024 (nanoGPT-style token files)."""
    c.data.name = "owt"
    c.data.mode = "gpt2"
    c.data.seq_len = 1024
    c.model.update(
        num_layers=12, width=768, num_heads=12, max_len=1024, dropout=0.1, dtype="bfloat16"
    )
    c.optim.update(lr=3e-4, warmup_steps=2500, decay="constant", ema_decay=0.9999)
    c.train.update(
        batch_size=512,
        num_steps=1_000_000,
        checkpoint_every=10_000,
        log_every=1000,
        eval_every=50_000,
        max_to_keep=3,
    )
    c.eval.update(num_time_samples=4, batch_size=256, during_train_batches=4)
    c.sample.update(steps=1000, num_samples=8)
    return c


def digits(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """scikit-learn digits: 8x8 images, 17 levels, class-conditional small U-Net."""
    c.data.name = "digits"
    c.data.vocab_size = 17
    c.data.seq_len = 64
    c.model.update(
        name="unet", base_channels=32, channel_mults=(1, 2), num_classes=10, time_conditioning=True
    )
    c.optim.update(lr=1e-3, warmup_steps=100, decay="cosine", ema_decay=0.999)
    c.train.update(batch_size=64, num_steps=2000, checkpoint_every=500, log_every=100)
    c.eval.update(num_time_samples=8, batch_size=180)
    c.sample.update(steps=100, num_samples=20)
    return c


# -- objectives --------------------------------------------------------------------


def mdlm(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """MDLM: masking, log-linear schedule, SUBS, continuous-time masked ELBO."""
    c.process.update(name="masking", schedule="loglinear")
    c.loss.name = "masked_elbo"
    return c


def sedd_absorb(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """SEDD absorbing: masking process, score entropy over all K + 1 states."""
    c.process.update(name="masking", schedule="loglinear")
    c.loss.update(name="score_entropy", scale_by_sigma=True)
    c.sample.sampler = "tweedie"
    return c


def sedd_uniform(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """SEDD uniform: uniform process, score entropy."""
    c.process.update(name="uniform", schedule="loglinear")
    c.loss.update(name="score_entropy", scale_by_sigma=False)
    c.sample.sampler = "tweedie"
    return c


def udlm(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """UDLM: uniform process, the continuous-time uniform NELBO."""
    c.process.update(name="uniform", schedule="loglinear")
    c.loss.update(name="uniform_elbo", plugin=False)
    return c


def d3pm(c: ml_collections.ConfigDict, kind: str) -> ml_collections.ConfigDict:
    """D3PM with T = 1000 and the hybrid loss (kind: absorbing | uniform | gaussian)."""
    c.process.update(name=f"d3pm_{kind}", num_steps=1000)
    c.loss.update(name="d3pm_hybrid", aux_weight=0.01)
    c.sample.steps = 1000
    return c


def radd(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """RADD: a time-free network trained with the any-order (k-DCE) loss."""
    c.process.update(name="masking", schedule="loglinear")
    c.model.time_conditioning = False
    c.loss.name = "any_order_nll"
    return c


def bd3lm(
    c: ml_collections.ConfigDict,
    block_size: int,
    mask_rate: tuple[float, float] = (0.0, 1.0),
) -> ml_collections.ConfigDict:
    """BD3-LM: masking, log-linear schedule, a time-free block-causal DiT, the block
    masked ELBO over blocks of ``block_size`` (one pass over [x_t ; x0]), optionally
    BD3-LM's clipped mask-rate schedule for training."""
    c.process.update(name="masking", schedule="loglinear")
    c.model.time_conditioning = False
    c.loss.update(
        name="block_masked_elbo",
        block_size=block_size,
        mask_rate_min=float(mask_rate[0]),
        mask_rate_max=float(mask_rate[1]),
    )
    return c


def ar(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Autoregressive baseline: causal transformer, cross-entropy, exact NLL."""
    c.process.name = "none"
    c.model.update(name="ar", time_conditioning=False)
    c.loss.name = "ar"
    c.eval.num_time_samples = 1
    return c

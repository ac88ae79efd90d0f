"""Published checkpoints in ddjax: MDLM, SEDD, Duo, BD3-LM and GPT-2, logits-exact.

Each ``load_*`` reads a local checkpoint as its authors publish it (a Hugging Face
folder with ``config.json`` and ``model.safetensors``, read with ``safetensors.numpy``
and no PyTorch; a torch ``.bin`` / ``.pth`` / Lightning ``.ckpt`` through a restricted
unpickler that needs no torch and runs no pickled code, :func:`read_torch_zip`) and
returns a frozen :class:`Pretrained`: the ddjax ``model``, the ``process`` with the
matching schedule, ``apply(x_t, t)`` (exactly what the reference
network returns) and ``denoiser(x_t, t)`` (the ddjax contract, log p(x0 | x_t) over
the K data tokens). Every ``save_*`` writes the same layout back, so a model trained in
ddjax runs in the references' own evaluation code.

>>> import ddjax as dd
>>> mdlm = dd.interop.load_mdlm("mdlm-owt")                 # doctest: +SKIP
>>> x = dd.samplers.remdm(key, mdlm.denoiser, mdlm.process, (4, 1024), steps=1024)  # doctest: +SKIP

The architecture differences of the references are :class:`ddjax.models.DiT` options
(``cond_dim``, ``time_scale``, ``norm``, ``norm_eps``, ``adaln``, ``positions``,
``attention_bias``, ``tie_embeddings``, ``readout_bias``, ``bos_shift``,
``scale_by_sigma``, ``zero_at_input``); the loaders only map weights.
"""

from ddjax.interop._checkpoint import CheckpointError, read_config, read_state_dict
from ddjax.interop._diffusion import (
    REFERENCE_DIT_OPTIONS,
    Pretrained,
    load_bd3lm,
    load_duo,
    load_mdlm,
    load_sedd,
    mdlm_subs,
    reference_dit,
    save_bd3lm,
    save_duo,
    save_mdlm,
    save_sedd,
)
from ddjax.interop._gpt2 import GPT2_OPTIONS, gpt2_model, gpt2_tokenizer, load_gpt2, save_gpt2
from ddjax.interop._torch_pickle import Opaque, read_torch_zip

__all__ = [
    "CheckpointError",
    "Pretrained",
    "REFERENCE_DIT_OPTIONS",
    "GPT2_OPTIONS",
    "read_state_dict",
    "read_config",
    "read_torch_zip",
    "Opaque",
    "reference_dit",
    "gpt2_model",
    "mdlm_subs",
    "load_mdlm",
    "load_sedd",
    "load_duo",
    "load_gpt2",
    "load_bd3lm",
    "save_mdlm",
    "save_sedd",
    "save_duo",
    "save_gpt2",
    "save_bd3lm",
    "gpt2_tokenizer",
]

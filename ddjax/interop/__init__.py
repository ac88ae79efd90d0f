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

The references' shared network is a :class:`ddjax.models.DiT` configured by
:data:`REFERENCE_DIT_OPTIONS` (``cond_dim``, ``time_scale``, ``norm``, ``norm_eps``;
``block_size`` for BD3-LM), GPT-2 a ``CausalTransformer`` with :data:`GPT2_OPTIONS`;
what a reference does with its network's output (MDLM's SUBS, SEDD's log-score scaling,
Duo's log-softmax) is in its loader's ``apply``.

Modules, one per family: :mod:`~ddjax.interop.mdlm`, :mod:`~ddjax.interop.sedd`,
:mod:`~ddjax.interop.duo`, :mod:`~ddjax.interop.bd3lm` (all on the shared DiT layout of
:mod:`~ddjax.interop.dit_weights`) and :mod:`~ddjax.interop.gpt2`; reading and writing
in :mod:`~ddjax.interop.checkpoint`, torch pickles without torch in
:mod:`~ddjax.interop.torch_pickle`.
"""

from ddjax.interop.bd3lm import load_bd3lm, save_bd3lm
from ddjax.interop.checkpoint import CheckpointError, Pretrained, read_config, read_state_dict
from ddjax.interop.dit_weights import REFERENCE_DIT_OPTIONS, reference_dit
from ddjax.interop.duo import load_duo, save_duo
from ddjax.interop.gpt2 import GPT2_OPTIONS, gpt2_model, gpt2_tokenizer, load_gpt2, save_gpt2
from ddjax.interop.mdlm import load_mdlm, mdlm_subs, save_mdlm
from ddjax.interop.sedd import load_sedd, save_sedd, sedd_log_score
from ddjax.interop.torch_pickle import Opaque, read_torch_zip

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
    "sedd_log_score",
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

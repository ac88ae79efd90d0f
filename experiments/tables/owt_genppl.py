"""Generative perplexity and entropy of a published checkpoint's samples, sampler x steps.

The table the MDLM, Duo and ReMDM papers report on OpenWebText: draw unconditional
samples from a loaded checkpoint (``ddjax.interop``: mdlm-owt, sedd-small/medium, duo,
duo-distilled, bd3lm-owt-block_size4/8/16) with each ddjax sampler and step count (for
BD3-LM: block by block with ``dd.samplers.block_diffusion`` and the exact KV cache, the
named sampler inside each block, steps per block), and score them under a judge
causal model (GPT-2 large in the papers, loaded with ``load_gpt2``) with
``ddjax.metrics.generative_perplexity``: samples end at their first end-of-text (the
GPT-2 id 50256) and are scored in chunks of the judge's context with the first token of
each chunk as context only (MDLM's evaluation). Entropy is the mean per-sample unigram
entropy of the judge tokens (the diversity check; the papers' OWT data sit near 5.6).

    python -m experiments.tables.owt_genppl --checkpoint mdlm-owt --judge gpt2-large
    python -m experiments.tables.owt_genppl --checkpoint duo --judge gpt2-large \\
        --samplers ancestral --options plugin=True --steps 32,64,128,256,512,1024
    python -m experiments.tables.owt_genppl --checkpoint bd3lm-owt-block_size16 \
        --judge gpt2-large --samplers ancestral,first_hitting --steps 4,16
    python -m experiments.tables.owt_genppl --quick   # tiny fixtures, CPU, seconds

A GPU run: launch/owt_genppl.sh CHECKPOINT JUDGE [extra flags].
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import ddjax as dd
from experiments.tables import _report

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
LOADERS = {
    "mdlm": dd.interop.load_mdlm,
    "sedd": dd.interop.load_sedd,
    "duo": dd.interop.load_duo,
    "bd3lm": dd.interop.load_bd3lm,
}
DEFAULT_SAMPLERS = {"masking": "ancestral,remdm", "uniform": "ancestral", "bd3lm": "ancestral"}


def detect_kind(path: Path) -> str:
    """'mdlm', 'sedd', 'duo' or 'bd3lm' from a checkpoint's config.json."""
    cfg_path = (path if path.is_dir() else path.parent) / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    if cfg.get("model_type") == "bd3lm" or "block_size" in cfg:
        return "bd3lm"
    if "graph" in cfg:
        return "sedd"
    if cfg.get("model_type") == "mdlm" or "hidden_dim" in cfg:
        return "mdlm"
    if "algo" in cfg or "duo" in str(cfg.get("model_type", "")):
        return "duo"
    raise SystemExit(f"cannot tell the checkpoint kind of {path}: pass --kind")


def sample(
    pretrained: dd.interop.Pretrained,
    sampler: str,
    steps: int,
    shape: tuple[int, int],
    batches: int,
    seed: int,
    options: dict | None = None,
) -> tuple[np.ndarray, float]:
    """``batches`` x shape[0] samples, int32[N, L], and the sampling wall time (s).

    A BD3-LM checkpoint samples block by block (``dd.samplers.block_diffusion`` with the
    exact KV cache, ``sampler`` inside each block, ``steps`` per block); the parameters
    enter the compiled program as arguments, not constants.
    """
    options = options or {}
    process = pretrained.process
    if pretrained.kind == "bd3lm":
        graphdef, params = nnx.split(pretrained.model, nnx.Param)
        time_conditioned = bool(pretrained.config.get("time_conditioning", False))

        def run(params: object, key: jax.Array) -> jax.Array:
            # BD3-LM's released models are time-free (the network sees t = 0): cacheable.
            den = dd.models.block_denoiser(
                (graphdef, params),
                process,
                time_conditioning=time_conditioned,
                cache=not time_conditioned,
            )
            return dd.samplers.block_diffusion(
                key, den, process, shape, block_size=den.block_size, steps=steps,
                inner=sampler, **options,
            )  # fmt: skip
    else:
        params = None

        def run(params: object, key: jax.Array) -> jax.Array:
            return dd.samplers.SAMPLERS[sampler](
                key, pretrained.denoiser, process, shape, steps=steps, **options
            )

    jitted = jax.jit(run)

    def fn(key: jax.Array) -> jax.Array:
        return jitted(params, key)

    out = [np.asarray(fn(jax.random.key(seed)))]  # compiles
    started = time.time()
    for b in range(1, batches):
        out.append(np.asarray(fn(jax.random.key(seed + b))))
    wall = (time.time() - started) / max(batches - 1, 1)
    return np.concatenate(out), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint folder or file")
    parser.add_argument("--judge", type=Path, help="a GPT-2 checkpoint folder (HF layout)")
    parser.add_argument("--kind", choices=sorted(LOADERS), default=None)
    parser.add_argument("--samplers", default=None, help="comma-separated sampler names")
    parser.add_argument("--steps", default=None, help="comma-separated step counts")
    parser.add_argument("--batch", type=int, default=None, help="samples per sampler call")
    parser.add_argument("--batches", type=int, default=None, help="sampler calls per cell")
    parser.add_argument("--length", type=int, default=None, help="sequence length")
    parser.add_argument("--eos-id", type=int, default=None, help="default: 50256 at K=50257")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--options",
        default="",
        help="sampler keyword options, KEY=VALUE,... (Python literals), e.g. plugin=True for "
        "Duo's plug-in ancestral step, schedule='loop' for ReMDM",
    )
    parser.add_argument("--quick", action="store_true", help="tiny fixtures (CI)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    if args.quick:
        args.checkpoint = args.checkpoint or FIXTURES / "mdlm_tiny"
        args.judge = args.judge or FIXTURES / "gpt2_tiny"
    if args.checkpoint is None or args.judge is None:
        parser.error("--checkpoint and --judge are required (or --quick)")
    kind = args.kind or detect_kind(args.checkpoint)
    pretrained = LOADERS[kind](args.checkpoint)
    judge = dd.interop.load_gpt2(args.judge)
    process = pretrained.process
    family = "masking" if process.mask_id is not None else "uniform"
    family = "bd3lm" if kind == "bd3lm" else family
    samplers = (args.samplers or DEFAULT_SAMPLERS[family]).split(",")
    if kind == "bd3lm":  # steps per block: one token per call at steps = block size
        block = pretrained.model.block_size
        default_steps = f"{max(block // 2, 1)},{block}"
    else:
        default_steps = "4,8" if args.quick else "128,256,512,1024"
    steps_list = [int(s) for s in (args.steps or default_steps).split(",")]
    length = args.length or pretrained.model.max_len
    shape = (args.batch or (4 if args.quick else 16), length)
    batches = args.batches or (2 if args.quick else 4)
    vocab = process.vocab_size
    eos = args.eos_id if args.eos_id is not None else (50256 if vocab == 50257 else None)
    if judge.model.vocab_size < vocab:
        raise SystemExit(
            f"the judge has {judge.model.vocab_size} ids for a {vocab}-token model: the "
            "vocabularies differ; retokenise with generative_perplexity(decode=, encode=)"
        )

    options = {}
    for item in filter(None, args.options.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = ast.literal_eval(value.strip())
    rows = []
    for sampler in samplers:
        for steps in steps_list:
            x, wall = sample(pretrained, sampler, steps, shape, batches, args.seed, options)
            res = dd.metrics.generative_perplexity(x, judge, eos_id=eos, batch_size=shape[0])
            rows.append(
                [
                    sampler,
                    steps,
                    round(res.perplexity, 2),
                    round(res.entropy, 3),
                    round(1e3 * wall, 1),
                ]
            )
            print(rows[-1], flush=True)

    header = ["sampler", "steps", "gen. perplexity", "entropy (nats)", "ms per batch"]
    if kind == "bd3lm":
        header[1] = "steps per block"
    notes = (
        f"Checkpoint {args.checkpoint} ({kind}, {type(process).__name__} over K = {vocab}, "
        f"{type(process.schedule).__name__} schedule"
        + (
            f", block size {pretrained.model.block_size}, sampled block by block with the KV cache"
            if kind == "bd3lm"
            else ""
        )
        + f"), judge {args.judge} "
        f"({len(judge.model.blocks)} layers); {shape[0] * batches} samples of {length} "
        f"tokens per cell; first-EOS id {eos}; sampler options {options or 'the defaults'}. "
        "Generative perplexity by ddjax.metrics.generative_perplexity (its docstring has "
        "the rules)."
    )
    if args.quick:
        notes += " Quick mode: tiny random-weight fixtures, the numbers mean nothing."
    out = args.out or _report.DOCS / "tables"
    path = _report.write("owt_genppl", header, rows, started, notes, out)
    print(path.read_text())


if __name__ == "__main__":
    main()

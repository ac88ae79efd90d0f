"""Sampler overhead: wall time / (network calls x one jitted forward pass).

A 4-layer, width-256 DiT denoiser (``ddjax.models.DiT``, random weights) at L = 256,
B = 16 on the CPU. The forward pass ends in log-probabilities (SUBS), so the ratio
measures everything a sampler adds to its network calls: the categorical draws, the
posterior algebra and the loop. Both are measured in the same run: the forward time
is the mean of the fastest of two calls right before and two right after each
sampler run (so a change of machine load moves both), the sampler time the fastest of
its timed runs. Compile time is reported separately (``lower().compile()``).

Targets: ratio <= 1.05 at vocabulary 28, <= 1.5 at 50258 (GPT-2 + mask).

    python benchmarks/samplers.py --quick            # a few samplers, 16 steps, vocab 28
    python benchmarks/samplers.py                    # the full table (long, see below)
    python benchmarks/samplers.py --vocab 50258 --steps 16 --samplers ancestral,remdm

The full run uses steps {16, 64, 256} at vocabulary 28 and a reduced set at 50258,
where one forward pass costs seconds on a 2-core CPU: steps 16 for every sampler and
64 for the masking samplers. first_hitting is timed with ``tokens_per_call = L / steps``
(``steps`` calls), and at vocabulary 28 also with one token per call (L = 256 calls).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import _record
import jax
import jax.numpy as jnp
from flax import nnx

import ddjax as dd
from ddjax.parameterizations import subs

try:
    from ddjax import models as _models
except ImportError:  # ddjax.models not there yet: a minimal local stand-in below
    _models = None

MASKING_SAMPLERS = ("ancestral", *dd.samplers.MASKING_ONLY)
QUICK_SAMPLERS = ("ancestral", "first_hitting", "remdm", "confidence", "euler")
TARGET = {28: 1.05, 50258: 1.5}


class _Block(nnx.Module):
    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs) -> None:
        self.heads = heads
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
        self.out = nnx.Linear(width, width, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        b, l, d = h.shape
        q, k, v = jnp.split(self.qkv(self.norm1(h)).reshape(b, l, 3 * self.heads, -1), 3, 2)
        h = h + self.out(jax.nn.dot_product_attention(q, k, v).reshape(b, l, d))
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))


class LocalTransformer(nnx.Module):
    """Stand-in for ddjax.models.DiT: (x int32[B, L], t float32[B]) -> logits [B, L, out]."""

    def __init__(self, *, vocab_size, out_size, num_layers, width, num_heads, max_len, rngs):
        self.embed = nnx.Embed(vocab_size, width, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, width)))
        self.time = nnx.Linear(1, width, rngs=rngs)
        self.blocks = nnx.List([_Block(width, num_heads, rngs=rngs) for _ in range(num_layers)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.readout = nnx.Linear(width, out_size, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        h = self.embed(x) + self.pos[...][: x.shape[1]] + self.time(t[:, None, None])
        for block in self.blocks:
            h = block(h)
        return self.readout(self.norm(h))


def build_model(vocab: int, length: int, seed: int = 0):
    """(graphdef, params) of the 4-layer width-256 DiT with random (non-zero) weights."""
    cls = _models.DiT if _models is not None else LocalTransformer
    model = cls(
        vocab_size=vocab + 1,
        out_size=vocab,
        num_layers=4,
        width=256,
        num_heads=4,
        max_len=length,
        rngs=nnx.Rngs(seed),
    )
    graphdef, params = nnx.split(model, nnx.Param)
    # the DiT readout starts at zero (all logits equal); perturb every weight so the
    # predictions are not uniform
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [p + 0.02 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    return graphdef, jax.tree.unflatten(treedef, leaves)


def make_denoiser(graphdef, vocab: int) -> Callable:
    """(params, x int32[B, L], t float32[B]) -> SUBS log-probabilities float32[B, L, K]."""

    def denoise(params, x, t):
        return subs(nnx.merge(graphdef, params)(x, t), x, vocab)

    return denoise


def timed(fn: Callable, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def forward_time(forward, params, x, t, repeats: int) -> float:
    return min(timed(forward, params, x, t) for _ in range(repeats))


def network_only(key, denoiser, process, shape, *, steps):
    """Baseline: ``steps`` chained network calls in a lax.scan and nothing else.

    Each call decodes one block of positions by argmax, so every call depends on the
    previous one. Its ratio shows what the loop itself costs (or saves) against
    standalone forward passes.
    """
    del key
    b, l = shape
    x = jnp.full(shape, process.mask_id, jnp.int32)
    block = jnp.arange(l) * steps // l

    def body(x, i):
        t = jnp.full((b,), 1.0 - i / steps, jnp.float32)
        best = jnp.argmax(denoiser(x, t), axis=-1).astype(jnp.int32)
        return jnp.where(block == i, best, x), None

    return jax.lax.scan(body, x, jnp.arange(steps))[0]


BASELINE = "(network only)"


def sampler_options(name: str, steps: int, length: int, per_call: int | None) -> dict:
    if name == "first_hitting":
        return {"tokens_per_call": per_call or max(1, length // steps)}
    return {"steps": steps}


def run_row(name, process, denoise, params, shape, steps, per_call, forward, fwd_args, repeats):
    options = sampler_options(name, steps, shape[1], per_call)
    fn = network_only if name == BASELINE else dd.samplers.SAMPLERS[name]
    jitted = jax.jit(lambda p, k: fn(k, partial(denoise, p), process, shape, **options))
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = jitted.lower(params, key).compile()
    compile_s = time.perf_counter() - start
    if repeats == 1 and steps <= 16:  # a cheap untimed first run (memory, thread pools)
        jax.block_until_ready(compiled(params, key))
    before = forward_time(forward, *fwd_args, repeats=2)
    wall = min(timed(compiled, params, jax.random.key(i + 1)) for i in range(repeats))
    fwd = 0.5 * (before + forward_time(forward, *fwd_args, repeats=2))
    extra = {k: v for k, v in options.items() if k != "steps"}
    calls = steps if name == BASELINE else dd.samplers.network_calls(name, steps, shape[1], **extra)
    return {
        "calls": calls,
        "wall": wall,
        "fwd": fwd,
        "ratio": wall / (calls * fwd),
        "compile": compile_s,
        "options": options,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samplers, 16 steps, vocab 28")
    parser.add_argument("--vocab", default="28,50258", help="comma-separated vocabulary sizes")
    parser.add_argument("--steps", default=None, help="comma-separated step counts")
    parser.add_argument("--samplers", default=None, help="comma-separated sampler names")
    parser.add_argument("--process", default="masking", choices=["masking", "uniform", "both"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (min)")
    parser.add_argument("--record", default=None, help="also write the output here (markdown)")
    args = parser.parse_args()
    with _record.recorded(args.record):
        _bench(args)


def _bench(args: argparse.Namespace) -> None:

    vocabs = [28] if args.quick else [int(v) for v in args.vocab.split(",")]
    names = (
        args.samplers.split(",")
        if args.samplers
        else (QUICK_SAMPLERS if args.quick else sorted(dd.samplers.SAMPLERS))
    )
    for name in names:
        if name not in dd.samplers.SAMPLERS:
            raise SystemExit(f"unknown sampler {name!r}; known: {sorted(dd.samplers.SAMPLERS)}")
    processes = ["masking", "uniform"] if args.process == "both" else [args.process]
    b, l = args.batch, args.length

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    model = "ddjax.models.DiT" if _models is not None else "a local stand-in transformer"
    print(f"model: {model}, 4 layers x 256 wide, 4 heads; B = {b}, L = {l}; SUBS log-probs")
    rows = []
    for vocab in vocabs:
        big = vocab > 4096
        if args.steps:
            step_list = [int(s) for s in args.steps.split(",")]
        elif args.quick:
            step_list = [16]
        else:
            step_list = [16, 64] if big else [16, 64, 256]
        repeats = args.repeats or (1 if big or args.quick else 2)
        graphdef, params = build_model(vocab, l)
        denoise = make_denoiser(graphdef, vocab)
        forward = jax.jit(denoise)
        x = jnp.where(jnp.arange(l) % 2 == 0, vocab, jnp.arange(l) % vocab).astype(jnp.int32)
        fwd_args = (params, jnp.broadcast_to(x, (b, l)), jnp.full((b,), 0.5, jnp.float32))
        jax.block_until_ready(forward(*fwd_args))
        if big and not args.steps:
            print(
                f"\nvocab {vocab}: reduced set: steps {step_list} for the masking samplers, "
                f"{step_list[:1]} for the others (one forward pass is seconds here)"
            )
        for proc_name in processes:
            if proc_name == "masking":
                process = dd.processes.Masking(vocab_size=vocab)
            else:
                process = dd.processes.Uniform(vocab_size=vocab)
            for name in [BASELINE, *names] if proc_name == "masking" else names:
                if proc_name == "uniform" and name in MASKING_SAMPLERS[1:]:
                    continue
                variants = [(s, None) for s in step_list]
                if name == BASELINE:
                    variants = variants[:1]
                if big and not args.steps and name not in MASKING_SAMPLERS:
                    variants = variants[:1]
                if name == "first_hitting" and not big and not args.quick and not args.steps:
                    if l not in step_list:
                        variants.append((l, 1))  # one token per call: L calls
                for steps, per_call in variants:
                    try:
                        row = run_row(
                            name,
                            process,
                            denoise,
                            params,
                            (b, l),
                            steps,
                            per_call,
                            forward,
                            fwd_args,
                            repeats,
                        )
                    except NotImplementedError as err:
                        print(f"  {name}: skipped ({err})")
                        break
                    row.update(vocab=vocab, process=proc_name, name=name, steps=steps)
                    rows.append(row)
                    ok = "ok" if row["ratio"] <= TARGET.get(vocab, 1.5) else "MISS"
                    print(
                        f"  {proc_name:8s} K={vocab:<6d} {name:20s} steps={steps:<4d} "
                        f"calls={row['calls']:<4d} ratio={row['ratio']:.3f} {ok} "
                        f"(wall {row['wall']:.2f}s, fwd {row['fwd'] * 1e3:.0f}ms, "
                        f"compile {row['compile']:.1f}s)",
                        flush=True,
                    )

    print()
    base = {(r["process"], r["vocab"]): r["ratio"] for r in rows if r["name"] == BASELINE}
    print(
        "| process | vocab | sampler | steps | calls | wall (s) | fwd (ms) | ratio "
        "| vs net-only | compile (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rel = base.get((r["process"], r["vocab"]))
        rel = f"{r['ratio'] / rel:.3f}" if rel else "-"
        name = r["name"]
        if name == "first_hitting":
            name += f" (k={r['options']['tokens_per_call']})"
        print(
            f"| {r['process']} | {r['vocab']} | {name} | {r['steps']} | {r['calls']} | "
            f"{r['wall']:.2f} | {r['fwd'] * 1e3:.0f} | {r['ratio']:.3f} | {rel} "
            f"| {r['compile']:.1f} |"
        )
    print("\nratio = wall / (calls x forward); targets: <= 1.05 at vocab 28, <= 1.5 at 50258.")
    print(
        f"{BASELINE}: a lax.scan of bare forward calls (the loop's own cost); 'vs net-only' "
        "is ratio / its ratio."
    )
    print("first_hitting's 'steps' column is the calls it was given (tokens_per_call = L/steps).")


if __name__ == "__main__":
    main()

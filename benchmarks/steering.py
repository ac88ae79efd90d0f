"""Steering cost: smc (num_particles = N) and svdd (num_candidates = N) against ancestral.

The target: a steering sampler costs at most 1.2 x N x ancestral at equal steps
(its weights, resampling and candidate draws must not dominate). Measured as

    ratio = time(method, N) / (N * time(ancestral))

and, to separate the method's own work from the network's cost per row (which need not
be linear in the batch: caches), time(method, N) / time(ancestral on B * N rows). Time is
the process's CPU time (all threads; robust to other jobs on a shared machine, which
move wall time by factors of 2 and more), with the wall-time ratio printed beside it.
Same denoiser (the samplers benchmark's DiT, 4 layers x 256 wide, random weights, SUBS
log-probabilities), same steps and batch, timed alternately in one run (method,
ancestral, ancestral on B * N rows, ...; the fastest of each), compile time apart. smc runs the
network on B * N rows per step; svdd uses the paper's cheap value
``svdd_value(denoiser, r)``, whose call on the B * N candidates is also the next step's
proposal (one call on B * N rows per step). The reward is a cheap token count
r(x) = 2 * mean(x == 3), and smc's twist G_t = (1 - t) r(x_t). smc_batched is smc with
``particle_batches = N``: the proposal in N sequential calls on B rows (``lax.map``).

    python benchmarks/steering.py --quick      # K = 28, N = 2, tiny sizes (the smoke test)
    python benchmarks/steering.py              # K = 28 and 50258, N = 4 and 8
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import _record
import jax
import jax.numpy as jnp
import samplers as bench

import ddjax as dd

TARGET = 1.2


def reward(x: jax.Array) -> jax.Array:
    """r(x) = 2 * fraction of tokens equal to 3: float32[N]."""
    return 2.0 * jnp.mean(x == 3, axis=-1)


def method(name: str, n: int):
    """(key, denoiser, process, shape, steps) -> samples, for ``name`` with N = n."""
    if name == "ancestral":
        return lambda k, d, p, shape, steps: dd.samplers.ancestral(k, d, p, shape, steps=steps)
    if name in ("smc", "smc_batched"):
        g = lambda x, t: (1.0 - t) * reward(x)  # noqa: E731
        parts = n if name == "smc_batched" else 1
        return lambda k, d, p, shape, steps: dd.samplers.smc(
            k, d, p, shape, steps=steps, log_potential=g, num_particles=n,
            particle_batches=parts,
        )  # fmt: skip
    return lambda k, d, p, shape, steps: dd.samplers.svdd(
        k, d, p, shape, steps=steps, value_fn=dd.samplers.svdd_value(d, reward),
        num_candidates=n, alpha=0.1,
    )  # fmt: skip


def timed(fn: Callable, *args) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def compiled(fn, denoise, params, process, shape, steps, quick=False):
    def run(a, k):
        den = partial(denoise, a)
        return fn(k, den, process, shape, steps)

    # --quick is a smoke test: XLA's cheapest compilation (the ratios are not meant then)
    options = {"xla_backend_optimization_level": 0} if quick else None
    return jax.jit(run, compiler_options=options).lower(params, jax.random.key(0)).compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 28, N = 2, tiny sizes")
    parser.add_argument("--vocab", default="28,50258", help="comma-separated vocabulary sizes")
    parser.add_argument("--n", default="4,8", help="comma-separated particles / candidates")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per row (min; at most 3 at K > 4096)"
    )
    parser.add_argument("--record", default=None, help="also write the output here (markdown)")
    args = parser.parse_args()
    with _record.recorded(args.record):
        _bench(args)


def _bench(args: argparse.Namespace) -> None:
    vocabs = [28] if args.quick else [int(v) for v in args.vocab.split(",")]
    ns = [2] if args.quick else [int(n) for n in args.n.split(",")]
    b, l = (2, 16) if args.quick else (args.batch, args.length)
    steps = 4 if args.quick else args.steps
    repeats = 1 if args.quick else args.repeats
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    print(f"model: the samplers benchmark's DiT (4 x 256); B = {b}, L = {l}, steps = {steps}")
    rows = []
    for vocab in vocabs:
        process = dd.processes.Masking(vocab_size=vocab)
        graphdef, params = bench.build_model(vocab, l)
        denoise = bench.make_denoiser(graphdef, vocab)
        q = args.quick
        anc = compiled(method("ancestral", 1), denoise, params, process, (b, l), steps, q)
        reps = repeats if vocab <= 4096 else min(repeats, 3)  # a forward is seconds at 50258
        for n in ns:
            many = compiled(method("ancestral", 1), denoise, params, process, (b * n, l), steps, q)
            for name in ("smc", "svdd") if q else ("smc", "smc_batched", "svdd"):
                start = time.perf_counter()
                fn = compiled(method(name, n), denoise, params, process, (b, l), steps, q)
                compile_s = time.perf_counter() - start
                for f in (fn, anc, many):  # untimed first runs
                    timed(f, params, jax.random.key(0))
                runs = {"method": [], "anc": [], "many": []}
                for i in range(reps):  # alternating, so a change of load moves all three
                    for key, f in (("method", fn), ("anc", anc), ("many", many)):
                        runs[key].append(timed(f, params, jax.random.key(i + 1)))
                wall = {k: min(r[0] for r in v) for k, v in runs.items()}
                cpu = {k: min(r[1] for r in v) for k, v in runs.items()}
                ratio = cpu["method"] / (n * cpu["anc"])
                rows_ratio = cpu["method"] / cpu["many"]
                wall_ratio = wall["method"] / (n * wall["anc"])
                ok = "ok" if ratio <= TARGET else "MISS"
                rows.append(
                    (vocab, name, n, cpu["method"], cpu["anc"], ratio, ok, cpu["many"],
                     rows_ratio, wall_ratio, compile_s)
                )  # fmt: skip
                print(
                    f"  K={vocab:<6d} {name:5s} N={n:<3d} cpu {cpu['method']:.3f}s, ancestral "
                    f"{cpu['anc']:.3f}s, ratio={ratio:.3f} {ok}, ancestral on B*N rows "
                    f"{cpu['many']:.3f}s: {rows_ratio:.3f} (wall ratio {wall_ratio:.3f}; "
                    f"compile {compile_s:.1f}s)",
                    flush=True,
                )
    print()
    print(
        "| K (data tokens) | method | N | steps | method CPU (s) | ancestral CPU (s) "
        "| ratio = method / (N x ancestral) | target <= 1.2 | ancestral on B * N rows, CPU (s) "
        "| method / ancestral on B * N rows | wall-time ratio | compile (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for vocab, name, n, c, a, ratio, ok, m, rr, wr, comp in rows:
        print(
            f"| {vocab} | {name} | {n} | {steps} | {c:.3f} | {a:.3f} | {ratio:.3f} | {ok} | "
            f"{m:.3f} | {rr:.3f} | {wr:.3f} | {comp:.1f} |"
        )
    print(
        "\nsmc: one network call per step on B * N rows, log_potential on them, systematic "
        "resampling in the loop; smc_batched: the same with particle_batches = N (N calls on "
        "B rows per step); svdd: svdd_value (the argmax-x0 reward), one call on "
        "B * N candidate rows per step (shared with the next proposal) and one on B rows "
        "at the start; ancestral: one call on B rows per step."
    )


if __name__ == "__main__":
    main()

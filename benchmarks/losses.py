"""Peak memory and time of the losses at GPT-2 vocabulary size.

For K = 50257, L = 1024, B = 8 (the float32 log-probs alone are 1.6 GB) this prints,
for masked_elbo, uniform_elbo and score_entropy under jit:

* peak: the compiled program's temporaries plus outputs (XLA's memory analysis,
  ``jax.jit(f).lower(...).compile().memory_analysis()``) as a multiple of the
  [B, L, K] input; ``+input`` adds the arguments themselves;
* time: the best of a few runs, as a multiple of one jitted ``log_softmax`` over
  the same array.

Targets: peak <= 1.5x, time <= 3x.

    python benchmarks/losses.py            # the full size (about 5 GB of RAM)
    python benchmarks/losses.py --small    # a quick run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import _record
import jax

from ddjax import losses, processes


def _best_time(fn: Callable, args: tuple, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def _memory(fn: Callable, args: tuple) -> tuple[int, int, int]:
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return (
        analysis.argument_size_in_bytes,
        analysis.temp_size_in_bytes,
        analysis.output_size_in_bytes,
    )


def _row(
    name: str, fn: Callable, args: tuple, input_bytes: int, reference: float | None, repeats: int
) -> float:
    """Prints one table row and returns the time in seconds."""
    arg_bytes, temp, out = _memory(fn, args)
    seconds = _best_time(jax.jit(fn), args, repeats)
    reference = reference or seconds
    peak, with_input = (temp + out) / input_bytes, (arg_bytes + temp + out) / input_bytes
    print(f"{name:<26}{peak:>7.3f}x{with_input:>8.3f}x{seconds / reference:>7.2f}x{seconds:>10.3f}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="K=8192, L=256, B=8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", default=None, help="also write the output here (markdown)")
    args = parser.parse_args()
    with _record.recorded(args.record):
        _bench(args)


def _bench(args: argparse.Namespace) -> None:
    k, length, batch = (8192, 256, 8) if args.small else (50257, 1024, 8)

    keys = jax.random.split(jax.random.key(0), 4)
    masking = processes.Masking(k)
    uniform = processes.Uniform(k)
    x0 = jax.random.randint(keys[0], (batch, length), 0, k)
    t = jax.random.uniform(keys[1], (batch,), minval=0.05, maxval=0.95)
    x_t_mask = masking.sample(keys[2], x0, t)
    x_t_unif = uniform.sample(keys[2], x0, t)

    @jax.jit
    def make_inputs(key):
        return jax.nn.log_softmax(jax.random.normal(key, (batch, length, k)), axis=-1)

    log_probs = jax.block_until_ready(make_inputs(keys[3]))
    size = log_probs.size * log_probs.dtype.itemsize
    print(f"K={k} L={length} B={batch}: input [B, L, K] float32 = {size / 1e9:.3f} GB")
    print(f"{'loss':<26}{'peak':>8}{'+input':>9}{'time':>8}{'seconds':>10}")
    ref = _row(
        "log_softmax (reference)",
        lambda lp: jax.nn.log_softmax(lp, axis=-1),
        (log_probs,),
        size,
        None,
        args.repeats,
    )
    cases = [
        ("masked_elbo (masking)", losses.masked_elbo, masking, x_t_mask),
        ("uniform_elbo (uniform)", losses.uniform_elbo, uniform, x_t_unif),
        ("score_entropy (uniform)", losses.score_entropy, uniform, x_t_unif),
    ]
    for name, loss, process, x_t in cases:
        fn = lambda lp, x0, xt, t, loss=loss, process=process: loss(lp, x0, xt, t, process)  # noqa: E731
        _row(name, fn, (log_probs, x0, x_t, t), size, ref, args.repeats)
    del log_probs

    # score_entropy under masking takes K + 1 states
    log_score = jax.block_until_ready(
        jax.jit(lambda key: jax.random.normal(key, (batch, length, k + 1)))(keys[3])
    )
    fn = lambda ls, x0, xt, t: losses.score_entropy(ls, x0, xt, t, masking)  # noqa: E731
    _row(
        "score_entropy (masking)",
        fn,
        (log_score, x0, x_t_mask, t),
        log_score.size * 4,
        ref,
        args.repeats,
    )
    print("peak: (temporaries + outputs) / input; +input: with the arguments")
    print("targets: peak <= 1.5x the input, time <= 3x the log_softmax")


if __name__ == "__main__":
    main()

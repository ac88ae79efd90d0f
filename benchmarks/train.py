r"""Training-step overhead: full train step time / the model's forward+backward alone.

    python benchmarks/train.py                       # shakespeare_mdlm on this machine
    python benchmarks/train.py --config=experiments/configs/text8_mdlm.py \
        --set model.dtype=bfloat16 --set train.batch_size=64 --peak_tflops=989

The train step is what ``experiments.main`` runs: noise sampling, the network, the
loss, gradients, AdamW with clipping, and the EMA, jitted with the state donated.
The baseline is ``jax.grad`` of ``sum(model(x_t, t) * w)`` on the same batch: the
network's forward and backward passes and nothing else. Timings alternate between
the two in rounds and report medians, which keeps the ratio meaningful on a busy
machine. With ``--peak_tflops`` the model FLOP utilisation of the train step is
printed as well (FLOPs from XLA's cost analysis of the compiled step); ``auto`` looks
the chip's dense bf16 peak up in :data:`PEAK_TFLOPS` by its device kind.

``--seconds S`` then trains for S seconds without pauses (the donated state carried on,
one fresh batch per step, synchronised every step's loss read-back of the step before)
and reports the sustained tokens/s and MFU over that window:

    python benchmarks/train.py --config=experiments/configs/text8_mdlm.py --synthetic \
        --set model.dtype=bfloat16 --set train.batch_size=64 --rounds 1 --seconds 120 \
        --peak_tflops auto
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import _record  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ddjax import training  # noqa: E402


def load_config(path: str, overrides: list[str]) -> Any:
    spec = importlib.util.spec_from_file_location("_bench_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    for item in overrides:
        key, value = item.split("=", 1)
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        old = node[leaf]
        node[leaf] = type(old)(value) if not isinstance(old, bool) else value == "True"
    return cfg


def synthetic_text(cfg: Any) -> Any:
    """Replaces the data set by random tokens of the right vocabulary (no files needed)."""
    from experiments import run

    vocab = {"text8": 27, "shakespeare": 27, "owt": 50257, "lm1b": 50257}[cfg.data.name]
    seq_len = int(cfg.data.seq_len)
    rng = np.random.default_rng(0)

    def make_iter(batch_size: int, seed: int) -> Any:
        while True:
            yield rng.integers(0, vocab, (batch_size, seq_len), dtype=np.int32)

    return run.Data(
        vocab, seq_len, None, make_iter, np.zeros((1, seq_len), np.int32), None, None, "token"
    )


# Dense bf16 peak TFLOP/s per chip (vendor data sheets; no sparsity), by device_kind.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,  # SXM; the PCIe card is 756
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "V100": 125.0,  # fp16 tensor cores
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v6 lite": 918.0,
    "TPU v6e": 918.0,
}


def peak_tflops(value: str) -> float:
    """``--peak_tflops``: a number, or 'auto' (the device kind's entry in PEAK_TFLOPS,
    longest matching name first; 0 = unknown, no MFU)."""
    if value != "auto":
        return float(value)
    kind = jax.devices()[0].device_kind
    for name in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_TFLOPS[name]
    print(f"note: no peak known for device kind {kind!r}; pass --peak_tflops=N for MFU")
    return 0.0


def timed(fn: Any, n: int) -> float:
    """Median seconds per call over ``n`` calls (each synchronised)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config", default=os.path.join(ROOT, "experiments/configs/shakespeare_mdlm.py")
    )
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE config override")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps_per_round", type=int, default=5)
    ap.add_argument("--synthetic", action="store_true", help="random tokens instead of the data")
    ap.add_argument(
        "--peak_tflops", default="0", help="device peak TFLOP/s for MFU, or 'auto' (by chip)"
    )
    ap.add_argument(
        "--seconds", type=float, default=0.0, help="then train this long: sustained tokens/s"
    )
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--record", default=None, help="also write the output here (markdown)")
    args = ap.parse_args()
    with _record.recorded(args.record):
        _bench(args)


def _bench(args: argparse.Namespace) -> None:

    from experiments import run

    args.peak_tflops = peak_tflops(str(args.peak_tflops))
    cfg = load_config(args.config, args.set)
    if args.synthetic or cfg.data.name not in ("shakespeare", "digits"):
        run.load_data = lambda c: synthetic_text(c)  # noqa: E731
    exp = run.build(cfg)
    state, tx = run.make_state(exp)
    step = training.jit_train_step(
        training.make_train_step(
            exp.objective,
            tx,
            ema_decay=float(cfg.optim.ema_decay),
            grad_accum=int(cfg.train.grad_accum),
        ),
        exp.mesh,
        state,
    )
    bs, seq_len = int(cfg.train.batch_size), exp.data.seq_len
    it = exp.data.make_train_iter(bs, 0)
    raw = next(it)
    batch = training.put_batch(raw if isinstance(raw, dict) else {"x": raw}, exp.mesh)

    # The network's forward + backward alone, on a noised batch of the same shape.
    x0 = batch["x"]
    process = exp.objective.process
    if process is None:
        x_in, t_in = x0, None
    elif process.is_discrete_time:
        t_idx = jnp.full((bs,), process.num_steps // 2, jnp.int32)
        x_in, t_in = process.sample(jax.random.PRNGKey(0), x0, t_idx), t_idx / process.num_steps
    else:
        t_in = jnp.full((bs,), 0.5, jnp.float32)
        x_in = process.sample(jax.random.PRNGKey(0), x0, t_in)
    if not exp.objective.time_conditioning:
        t_in = None
    out_shape = jax.eval_shape(lambda p: exp.apply_fn(p, x_in, t_in, None), state.params)
    w = jax.random.normal(jax.random.PRNGKey(1), out_shape.shape, jnp.float32)
    fwd_bwd = jax.jit(
        jax.grad(lambda p, x, t: jnp.sum(exp.apply_fn(p, x, t, None).astype(jnp.float32) * w))
    )
    params = jax.tree.map(jnp.copy, state.params)  # the train step donates state

    holder = {"state": state}

    def run_step() -> Any:
        holder["state"], m = step(holder["state"], batch)
        return m["loss"]

    def run_model() -> Any:
        return fwd_bwd(params, x_in, t_in)

    compiled = step.lower(state, batch).compile()
    flops = (
        (compiled.cost_analysis() or {}).get("flops", 0.0)
        if hasattr(compiled, "cost_analysis")
        else 0.0
    )
    if isinstance(flops, list):
        flops = flops[0].get("flops", 0.0)
    for _ in range(2):  # compile and warm up both
        run_step()
        jax.block_until_ready(run_model())
    t_step, t_model, cpu_step = [], [], []
    for _ in range(args.rounds):
        c0 = time.process_time()
        t_step.append(timed(run_step, args.steps_per_round))
        cpu_step.append((time.process_time() - c0) / args.steps_per_round)
        t_model.append(timed(run_model, args.steps_per_round))
    s, m = statistics.median(t_step), statistics.median(t_model)
    tokens = bs * seq_len
    result = {
        "config": os.path.relpath(args.config, ROOT),
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "batch": [bs, seq_len],
        "params_M": round(sum(x.size for x in jax.tree.leaves(params)) / 1e6, 3),
        "train_step_s": round(s, 5),
        "forward_backward_s": round(m, 5),
        "ratio": round(s / m, 3),
        "train_tokens_per_s": round(tokens / s, 1),
        "steps_per_s": round(1 / s, 3),
        # CPU seconds the process used per train step (all threads): on a shared machine,
        # the wall time an idle one would need lies between this / threads and this.
        "train_step_cpu_s": round(statistics.median(cpu_step), 5),
    }
    if flops and args.peak_tflops > 0:
        result["train_step_tflops"] = round(flops / 1e12, 3)
        result["mfu"] = round(flops / s / (args.peak_tflops * 1e12 * jax.device_count()), 4)
    print(
        f"{result['config']} on {result['device']}: train step {s * 1e3:.1f} ms, "
        f"forward+backward {m * 1e3:.1f} ms, ratio {s / m:.3f} (target <= 1.10); "
        f"{tokens / s:,.0f} tokens/s" + (f"; MFU {result['mfu']:.1%}" if "mfu" in result else "")
    )
    if args.seconds > 0:
        result.update(sustained(holder, step, it, exp.mesh, args.seconds, tokens))
        if flops and args.peak_tflops > 0:
            per_s = result["sustained_steps_per_s"]
            peak = args.peak_tflops * 1e12 * jax.device_count()
            result["sustained_mfu"] = round(flops * per_s / peak, 4)
        print(
            f"trained {result['sustained_steps']} steps in {result['sustained_seconds']:.0f} s: "
            f"{result['sustained_tokens_per_s']:,.0f} tokens/s"
            + (
                f"; MFU {result['sustained_mfu']:.1%} of {args.peak_tflops:g} TFLOP/s"
                if "sustained_mfu" in result
                else ""
            )
            + f"; loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}"
        )
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


def sustained(holder: dict, step: Any, it: Any, mesh: Any, seconds: float, tokens: int) -> dict:
    """Trains for ``seconds`` (a fresh batch each step, the previous step's loss read
    back while the next runs); steps/s and tokens/s over the window."""
    losses = []
    pending = None
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        raw = next(it)
        batch = training.put_batch(raw if isinstance(raw, dict) else {"x": raw}, mesh)
        holder["state"], m = step(holder["state"], batch)
        if pending is not None:
            losses.append(float(pending))
        pending = m["loss"]
        n += 1
    losses.append(float(pending))
    elapsed = time.perf_counter() - t0
    return {
        "sustained_steps": n,
        "sustained_seconds": round(elapsed, 2),
        "sustained_steps_per_s": round(n / elapsed, 4),
        "sustained_tokens_per_s": round(n * tokens / elapsed, 1),
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


if __name__ == "__main__":
    main()

"""Assembles docs/results.md from the tables the other scripts wrote in docs/tables/, and
docs/benchmarks.md from the benchmarks' ``--record`` files in docs/benchmarks/.

Nothing in the pages is typed by hand: each section is a file with the command,
machine and wall time that made it. One that has not been run yet is listed as
missing with the command that makes it.

    python -m experiments.tables.results_page
"""

from __future__ import annotations

from experiments.tables import _report

SECTIONS = [
    (
        "likelihood",
        "Likelihood on tiny Shakespeare (text8 alphabet)",
        "python -m experiments.tables.likelihood",
    ),
    (
        "sampling_quality",
        "Sampling quality against network calls",
        "python -m experiments.tables.sampling_quality",
    ),
    (
        "gumbel_precision",
        "Gumbel precision at K = 50257 (Zheng et al.)",
        "python -m experiments.tables.gumbel_precision",
    ),
    (
        "exact_toy",
        "Exact toy table: samplers against the oracle",
        "python -m experiments.tables.exact_toy",
    ),
    (
        "block_sizes",
        "Block diffusion (BD3-LM): bits per char against block size",
        "python -m experiments.tables.block_sizes",
    ),
    (
        "block_decoding",
        "Block diffusion decoding: sample quality against network calls per token",
        "python -m experiments.tables.block_decoding",
    ),
    (
        "posterior_oracle",
        "Posterior and planned samplers against the oracle (split_gibbs, aps, ddpd, pc_sampler)",
        "python -m experiments.tables.posterior_oracle",
    ),
    (
        "steering_oracle",
        "Steering samplers against the oracle (smc, svdd, edlm)",
        "python -m experiments.tables.steering_oracle",
    ),
    (
        "steering_text",
        "Steering on tiny Shakespeare: edlm against ancestral, reward against perplexity",
        "python -m experiments.tables.steering_text",
    ),
    ("digits", "Digits: bits per pixel", "python -m experiments.tables.digits"),
    (
        "guidance_digits",
        "Guidance on class-conditional digits",
        "python -m experiments.tables.guidance_digits",
    ),
    (
        "inverse_digits",
        "Inverse problems on digits: posterior sampling",
        "python -m experiments.tables.inverse_digits",
    ),
]


# How to read a table, where its generated reading needs context. Prose only: every
# number on the page comes from the table files.
COMMENTS = {
    "sampling_quality": (
        "Under the masking process with the log-linear schedule (alpha linear in t), euler, "
        "tweedie and dfm_euler take the same step law as the exact posterior (Euler's "
        "unmasking probability h / t is exact for linear alpha), and with the same random "
        "draws their rows coincide. The MDLM model behind this table is small and briefly "
        "trained, so its own error dominates the samplers' discretisation error: compare the "
        "samples' perplexity with the validation text's. MaskGIT-style confidence decoding "
        "trades entropy for perplexity, as it does in the literature. The float32 rows test "
        "Zheng et al.'s precision effect at K = 28, where it is expected to be small: the "
        "float32 draw only cuts classes whose step probability is more than ~16.6 nats below "
        "the mask's, and with 27 characters those carry little mass; the effect itself is "
        "measured at K = 50257 in the "
        "next table."
    ),
    "block_sizes": (
        "Block diffusion interpolates between AR (block 1: each token predicted from the "
        "clean prefix, the masked ELBO of one token being its NLL in expectation) and masked "
        "diffusion (one block of L). tests/test_block_loss.py checks the block ELBO with the "
        "oracle's exact block conditionals against the exact NLL at block sizes 1, 2 and L. "
        "The rows below are short trainings of the shared CPU model at an equal number of "
        "steps, so they measure how far each block size gets on this budget, not converged "
        "likelihoods (BD3-LM reports OWT perplexity falling from MDLM's towards AR's as the "
        "block shrinks, at 12 layers x 768 and 1M steps). A BD3-LM or MDLM row is an upper "
        "bound (NELBO) on its model's NLL, the AR row the exact NLL, so a gap between them "
        "mixes the model's quality with the looseness of the bound; gaps under two standard "
        "errors are called ties in the reading. The block-L row and the MDLM row model the "
        "same thing (one block of L) but train differently: the BD3-LM rows use BD3-LM's "
        "clipped mask-rate schedule and a time-free network, the MDLM row the full schedule "
        "with time conditioning, so the gap between those two rows is what that recipe "
        "buys at this budget, not block structure. The validation estimate of the block-1 "
        "row's bound is the noisiest (its s.e.), so its comparisons need the larger gap."
    ),
    "block_decoding": (
        "first_hitting decodes one position per call from the model's conditional, so its "
        "samples follow the model's own law: its row measures the model. MaskGIT confidence "
        "decoding and Fast-dLLM threshold decoding are heuristics that choose which positions "
        "to decode from the model's confidences; a judge score lower than first_hitting's "
        "together with a unigram entropy under the validation text's is the usual "
        "quality-for-diversity trade, not a better model. The judge is the small AR model of "
        "the block-size table (its bits/char on the validation text is the first row), so "
        "its scores rank samples only coarsely. Threshold decoding saves calls only where the "
        "model is confident about several masked positions at once; a briefly trained model "
        "rarely is, so the high thresholds cost about one call per token here, and with all "
        "rows in one batch every block waits for its slowest row."
    ),
    "steering_text": (
        "The MDLM behind this table is small and briefly trained (its samples score worse "
        "under the judge than a uniform guess over the 27 characters would), while the AR "
        "model EDLM reweights by is much stronger, so EDLM's gain is large and ancestral's "
        "perplexity is flat beyond a few steps; the equal-wall comparison therefore does not "
        "hinge on how closely the walls match (the table's notes give the machine load of the "
        "run). The judge is a second AR model, not the one EDLM uses. In part B the vowel "
        "reward rises with the strength at no measurable perplexity cost at this model quality; "
        "smc without a twist weighs only the finished samples (one of N picked at t = 0), so "
        "its pull levels off with the strength, while the twisted smc and svdd act at every "
        "step."
    ),
    "exact_toy": (
        "theta_trapezoidal is second order (Ren et al.) where its positive part "
        "(a1 R(x*) - a2 R(x) 1[x*_i = x_i])_+ stays inactive: on the weak target; on the "
        "strong one it clips and the order falls towards 1, with a smaller constant than the "
        "first-order methods. The table above was measured before the theta samplers' stage-2 fix: "
        "then the -a2 R(x) term was kept at positions that jumped in stage 1, which clipped "
        "under uniform noise and caused the uniform slope drop at the finest steps (not the "
        "schedule's stiffness, as this page said before); with the term dropped there the "
        "weak-target uniform slope is second order (tests/test_samplers_ctmc.py), and masking "
        "is unchanged. theta_rk2 is first order by construction: its second stage leaps from "
        "x with rates evaluated at the intermediate state x*, so a position that jumped in "
        "stage 1 gets the rates out of its new value applied from its old one."
    ),
}

BENCHMARKS = [
    (
        "losses",
        "Loss memory and time at K = 50257",
        "python benchmarks/losses.py --record docs/benchmarks/losses.md",
        "K = 50257, L = 1024, B = 8. peak = (temporaries + outputs) / the [B, L, K] float32 "
        "input under `jax.jit` (XLA's compiled memory analysis); time relative to one jitted "
        "`log_softmax` over the same array. Targets: peak <= 1.5x, time <= 3x. masked_elbo "
        "reads one entry per position (a gather); uniform_elbo and score_entropy sum over "
        "chunks of positions and never build a [B, L, K] temporary.",
    ),
    (
        "train",
        "Train step overhead (CPU)",
        "python benchmarks/train.py --record docs/benchmarks/train.md",
        "The shakespeare_mdlm config (4 layers x width 128, batch 32 x 128). ratio = full "
        "train step (noise, loss, gradients, AdamW, clipping, EMA, sharded batch) / the "
        "model's forward + backward alone, medians of alternating rounds. Target <= 1.10.",
    ),
    (
        "samplers_28",
        "Sampler overhead, K = 28 data tokens (previous benchmark version)",
        "python benchmarks/samplers.py --vocab 28 --steps 16,64 "
        "--record docs/benchmarks/samplers_28.md",
        "Recorded at commit 4f36d5b, before the redesign, with the previous version of the "
        "script: ratio = wall / (network calls x one standalone jitted forward), which reads "
        "low because the same forward runs faster inside the compiled loop; '(network only)' "
        "is a lax.scan of bare forward calls. Not rerun this session (the K = 50258 rows below "
        "use the current script: sampler / net loop, and the sampler's own work).",
    ),
    (
        "samplers_50258",
        "Sampler overhead, K = 50258 data tokens",
        "python benchmarks/samplers.py --vocab 50258 --steps 16 --samplers "
        "ancestral,euler,tweedie,theta_trapezoidal,theta_rk2 "
        "--repeats 2 --record docs/benchmarks/samplers_50258.md",
        "The same model with 50258 data tokens (+ the mask: 50259 states); one forward pass is "
        "seconds on a 2-core CPU, so 16 steps per sampler. Target <= 1.5. Under masking every "
        "sampler draws factorised: a Bernoulli per masked position and a token only at the "
        "decoded ones (the CTMC steps too). 'own work' includes one pass that "
        "writes the stand-in's fixed [B, L, K] array each call (824 MB here), so it is an upper "
        "bound on what the sampler adds. The previous version of this table divided by a "
        "standalone forward, and its '(network only)' loop read the output with an argmax, a "
        "variadic reduce that costs about as much as the network at this K on the CPU: both "
        "made the ratios read low (ancestral 0.95 then, 1.09 against the net loop now).",
    ),
    (
        "blocks",
        "Fast generation: block diffusion with the KV cache, full-sequence sampling, cached AR",
        "python benchmarks/blocks.py --record docs/benchmarks/blocks.md",
        "Cost per generated token at L = 1024, B = 1 on the CPU with a small random model "
        "(4 layers x 128): (a) full-sequence first_hitting (L calls over all L positions), "
        "(b) block diffusion with the exact KV cache at block 4 and 16 (one call per token on "
        "the block's positions, plus one cache write per block), (c) AR with the KV cache. "
        "Targets: (b) at block 16 <= 2x (c) per token and >= 10x cheaper than (a). Threshold "
        "decoding: calls per token on a random network (no trained model: no generative "
        "perplexity).",
    ),
    (
        "steering",
        "Steering cost: smc and svdd against N x ancestral",
        "python benchmarks/steering.py --record docs/benchmarks/steering.md",
        "ratio = time(method with N particles / candidates) / (N x time(ancestral)) at equal "
        "steps, same model (the samplers benchmark's DiT, random weights), process CPU time "
        "(the machine is shared: wall-time ratios are printed beside), timed alternately in "
        "one run. Target <= 1.2 at K = 28 and 50258. smc runs the network on B * N rows; svdd "
        "uses svdd_value, whose call on the B * N candidates is shared with the next step's "
        "proposal. 'method / ancestral on B * N rows' compares with ancestral run on the same "
        "rows: what the weights, resampling and candidate draws add, apart from the network's "
        "cost per row, which at K = 50258 grows with the batch on this CPU.",
    ),
    (
        "train_gpu",
        "GPU: training tokens/s and model FLOP utilisation (text8 config)",
        "python benchmarks/train.py --config=experiments/configs/text8_mdlm.py "
        "--set model.dtype=bfloat16 --peak_tflops=989 --record docs/benchmarks/train_gpu.md",
        "Needs a GPU (989 = H100 SXM dense bf16 peak TFLOP/s).",
    ),
]


def _section(path, title: str, cmd: str, about: str, images: str = "") -> list[str]:
    parts = [f"## {title}\n"]
    if about:
        parts.append(about + "\n")
    if not path.exists():
        parts.append(f"Not run yet. Command: `{cmd}`\n")
        return parts
    text = path.read_text()
    if images:  # table files link their images relative to their own folder
        text = text.replace("](", f"]({images}/").replace(f"]({images}/http", "](http")
    parts.append(text)
    return parts


def benchmarks_page() -> None:
    parts = [
        "# Benchmarks\n",
        "Ratios are measured within one run of each script, so they compare like with like "
        "on one machine. Every section is the recorded output of the command shown in it; "
        "regenerate this page with `python -m experiments.tables.results_page`. "
        "Results tables: [results.md](results.md).\n",
    ]
    for name, title, cmd, about in BENCHMARKS:
        parts += _section(_report.DOCS / "benchmarks" / f"{name}.md", title, cmd, about)
    out = _report.DOCS / "benchmarks.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")


def main() -> None:
    tables = _report.DOCS / "tables"
    parts = [
        "# Results\n",
        "Every table below was written by the script named under it (`experiments/tables/`), "
        "with the command, machine and wall time of that run; regenerate this page with "
        "`python -m experiments.tables.results_page`. "
        "Benchmarks: [benchmarks.md](benchmarks.md).\n",
    ]
    for name, title, cmd in SECTIONS:
        parts += _section(tables / f"{name}.md", title, cmd, COMMENTS.get(name, ""), "tables")
        if (tables / f"{name}.png").exists():
            parts.append(f"![{name}](tables/{name}.png)\n")
    out = _report.DOCS / "results.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")
    benchmarks_page()


if __name__ == "__main__":
    main()

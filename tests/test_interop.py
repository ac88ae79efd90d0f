"""ddjax.interop against golden outputs of the reference implementations.

The fixtures under tests/fixtures/ were made by tests/fixtures/make_fixtures.py, which
runs the reference repositories' own model code (MDLM, SEDD, Duo) and the transformers
GPT-2 at a tiny size with random weights; see tests/fixtures/README.md. No torch here.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

safetensors_numpy = pytest.importorskip("safetensors.numpy")

from ddjax import interop, parameterizations, processes, schedules  # noqa: E402
from ddjax.models import DiT  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TOL = 1e-4


def _io(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / name / "io.npz"))


def _close(actual: object, expected: np.ndarray, atol: float = TOL) -> float:
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    # entries near MDLM's -1e6 carry float32 rounding of the 1e6 scale: relative there
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=1e-6)
    finite = np.abs(expected) < 1e5
    return float(np.abs(actual - expected)[finite].max())


@pytest.fixture(scope="module")
def mdlm() -> interop.Pretrained:
    return interop.load_mdlm(FIXTURES / "mdlm_tiny")


@pytest.fixture(scope="module")
def gpt2() -> interop.Pretrained:
    return interop.load_gpt2(FIXTURES / "gpt2_tiny")


# --------------------------------------------------------------------------- logits


def test_mdlm_matches_reference(mdlm: interop.Pretrained) -> None:
    io = _io("mdlm_tiny")
    assert isinstance(mdlm.process, processes.Masking)
    assert mdlm.process.vocab_size == 60 and mdlm.process.mask_id == 60
    # mdlm-owt is not time-conditioned: the reference feeds sigma = 0
    raw = mdlm.model(jnp.asarray(io["x_t"]), jnp.zeros(3))
    _close(raw, io["logits"])
    _close(mdlm.apply(io["x_t"], io["t"]), io["log_probs"])
    lp = np.asarray(mdlm.denoiser(jnp.asarray(io["x_t"]), jnp.asarray(io["t"])))
    assert lp.shape == (3, 16, 60)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
    expect = parameterizations.subs(io["logits"], io["x_t"], 60)
    np.testing.assert_allclose(lp, np.asarray(expect), atol=TOL)


@pytest.mark.parametrize("name", ["sedd_absorb_tiny", "sedd_uniform_tiny"])
def test_sedd_matches_reference(name: str) -> None:
    io = _io(name)
    p = interop.load_sedd(FIXTURES / name)
    absorb = "absorb" in name
    assert isinstance(p.process, processes.Masking if absorb else processes.Uniform)
    assert isinstance(p.process.schedule, schedules.LogLinear if absorb else schedules.Geometric)
    np.testing.assert_allclose(p.process.schedule.sigma_bar(io["t"]), io["sigma"], rtol=1e-5)
    _close(p.apply(io["x_t"], io["t"]), io["log_score"])
    lp = np.asarray(p.denoiser(jnp.asarray(io["x_t"]), jnp.asarray(io["t"])))
    assert lp.shape == (3, 16, 60)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
    expect = parameterizations.log_probs_from_log_score(
        io["log_score"], io["x_t"], io["t"], p.process
    )
    np.testing.assert_allclose(lp, np.asarray(expect), atol=TOL)


def test_duo_matches_reference() -> None:
    io = _io("duo_tiny")
    p = interop.load_duo(FIXTURES / "duo_tiny")
    assert isinstance(p.process, processes.Uniform) and p.process.vocab_size == 60
    np.testing.assert_allclose(p.process.schedule.sigma_bar(io["t"]), io["sigma"], rtol=1e-5)
    _close(p.model(jnp.asarray(io["x_t"]), jnp.asarray(io["sigma"])), io["logits"])
    _close(p.apply(io["x_t"], io["t"]), io["log_probs"])
    _close(p.denoiser(jnp.asarray(io["x_t"]), jnp.asarray(io["t"])), io["log_probs"])


def test_gpt2_matches_reference(gpt2: interop.Pretrained) -> None:
    io = _io("gpt2_tiny")
    _close(gpt2.apply(io["x"]), io["logits"])
    assert gpt2.process is None and gpt2.denoiser is None


def test_gpt2_hub_layout_without_prefix(tmp_path: pathlib.Path) -> None:
    """The published gpt2 files: no 'transformer.' prefix, mask buffers, an explicit head."""
    state = safetensors_numpy.load_file(FIXTURES / "gpt2_tiny" / "model.safetensors")
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    state["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
    state["lm_head.weight"] = state["wte.weight"]
    safetensors_numpy.save_file(state, tmp_path / "model.safetensors")
    shutil.copy(FIXTURES / "gpt2_tiny" / "config.json", tmp_path)
    _close(interop.load_gpt2(tmp_path).apply(_io("gpt2_tiny")["x"]), _io("gpt2_tiny")["logits"])


@pytest.fixture(scope="module")
def bd3lm() -> interop.Pretrained:
    return interop.load_bd3lm(FIXTURES / "bd3lm_tiny")


def test_bd3lm_training_pass_matches_reference(bd3lm: interop.Pretrained) -> None:
    io = _io("bd3lm_tiny")
    assert bd3lm.model.block_size == 4 and bd3lm.process.mask_id == 60
    raw = bd3lm.model(jnp.asarray(io["x_t"]), jnp.zeros(3), x0=jnp.asarray(io["x0"]))
    _close(raw, io["train_logits"])
    _close(bd3lm.apply(io["x_t"], jnp.full(3, 0.5), x0=io["x0"]), io["train_log_probs"])


def test_bd3lm_sampling_pass_matches_reference(bd3lm: interop.Pretrained) -> None:
    io = _io("bd3lm_tiny")
    _close(bd3lm.model(jnp.asarray(io["x_s"]), jnp.zeros(3)), io["sample_logits"])
    lp = np.asarray(bd3lm.denoiser(jnp.asarray(io["x_s"]), jnp.full(3, 0.5)))
    assert lp.shape == (3, 12, 60)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)


def test_bd3lm_kv_cache_matches_reference(bd3lm: interop.Pretrained) -> None:
    io = _io("bd3lm_tiny")
    model = bd3lm.model
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def step(params, x_block, cache, offset):  # one program for every offset
        return nnx.merge(graphdef, params).cached_block(x_block, jnp.zeros(3), cache, offset)

    cache = model.init_cache(3)
    for b in range(2):  # the clean blocks, stored
        _, cache = step(params, jnp.asarray(io["x0"][:, 4 * b : 4 * b + 4]), cache, b * 4)
    out, _ = step(params, jnp.asarray(io["x_s"][:, 8:]), cache, 8)
    _close(out, io["cached_logits"])
    _close(out, io["sample_logits"][:, 8:])


def test_block_causal_attention() -> None:
    model = interop.reference_dit(
        vocab_size=9,
        out_size=9,
        num_layers=1,
        width=16,
        num_heads=2,
        cond_dim=8,
        max_len=8,
        block_size=2,
    )
    graphdef, params = nnx.split(model, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    leaves = [0.5 * jax.random.normal(k, v.shape) for k, v in zip(keys, leaves, strict=True)]
    model = nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))  # adaLN / readout non-zero
    x = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    y = x.at[0, 5].set(0)
    a, b = model(x, jnp.zeros(1)), model(y, jnp.zeros(1))
    np.testing.assert_array_equal(a[:, :4], b[:, :4])  # blocks 0, 1 do not see block 2
    assert not np.allclose(a[:, 4:6], b[:, 4:6])  # block 2 sees itself


# --------------------------------------------------------------------------- errors


def _rewrite(tmp_path: pathlib.Path, name: str, edit) -> pathlib.Path:
    state = safetensors_numpy.load_file(FIXTURES / name / "model.safetensors")
    edit(state)
    safetensors_numpy.save_file(state, tmp_path / "model.safetensors")
    shutil.copy(FIXTURES / name / "config.json", tmp_path)
    return tmp_path


def test_unknown_key_is_named(tmp_path: pathlib.Path) -> None:
    path = _rewrite(
        tmp_path,
        "mdlm_tiny",
        lambda s: s.update({"backbone.extra.weight": s["backbone.blocks.0.norm1.weight"]}),
    )
    with pytest.raises(interop.CheckpointError, match="extra.weight"):
        interop.load_mdlm(path)


def test_missing_key_is_named(tmp_path: pathlib.Path) -> None:
    path = _rewrite(tmp_path, "sedd_absorb_tiny", lambda s: s.pop("blocks.1.attn_out.weight"))
    with pytest.raises(interop.CheckpointError, match=r"blocks\.1\.attn_out\.weight"):
        interop.load_sedd(path)


def test_shape_mismatch_is_named(tmp_path: pathlib.Path) -> None:
    path = _rewrite(
        tmp_path, "duo_tiny", lambda s: s.update({"blocks.0.mlp.2.bias": np.zeros(31, np.float32)})
    )
    with pytest.raises(interop.CheckpointError, match=r"blocks\.0\.mlp\.2\.bias"):
        interop.load_duo(path)


def test_gpt2_shape_mismatch_is_named(tmp_path: pathlib.Path) -> None:
    path = _rewrite(
        tmp_path,
        "gpt2_tiny",
        lambda s: s.update({"transformer.h.1.ln_2.bias": np.zeros(33, np.float32)}),
    )
    with pytest.raises(interop.CheckpointError, match=r"h\.1\.ln_2\.bias"):
        interop.load_gpt2(path)


def test_wrong_head_count_is_caught(tmp_path: pathlib.Path) -> None:
    shutil.copy(FIXTURES / "sedd_absorb_tiny" / "model.safetensors", tmp_path)
    cfg = json.loads((FIXTURES / "sedd_absorb_tiny" / "config.json").read_text())
    cfg["model"]["n_heads"] = 4
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(interop.CheckpointError, match="rotary_emb.inv_freq"):
        interop.load_sedd(tmp_path)


def test_missing_checkpoint(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        interop.load_mdlm(tmp_path)


# --------------------------------------------------------------------------- export


def _same_state(a: pathlib.Path, b: pathlib.Path) -> None:
    sa = safetensors_numpy.load_file(a / "model.safetensors")
    sb = safetensors_numpy.load_file(b / "model.safetensors")
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize(
    "name,load,save",
    [
        ("mdlm_tiny", interop.load_mdlm, interop.save_mdlm),
        ("sedd_absorb_tiny", interop.load_sedd, interop.save_sedd),
        ("sedd_uniform_tiny", interop.load_sedd, interop.save_sedd),
        ("duo_tiny", interop.load_duo, interop.save_duo),
        ("gpt2_tiny", interop.load_gpt2, interop.save_gpt2),
        ("bd3lm_tiny", interop.load_bd3lm, interop.save_bd3lm),
    ],
)
def test_save_round_trip(name, load, save, tmp_path: pathlib.Path) -> None:
    p = load(FIXTURES / name)
    save(p, tmp_path)
    _same_state(FIXTURES / name, tmp_path)
    cfg_in = json.loads((FIXTURES / name / "config.json").read_text())
    cfg_out = json.loads((tmp_path / "config.json").read_text())
    for key in (
        "model",
        "graph",
        "noise",
        "tokens",
        "vocab_size",
        "n_heads",
        "n_layer",
        "block_size",
        "time_conditioning",
    ):
        if key in cfg_in:
            assert cfg_out[key] == cfg_in[key], key


def test_trained_in_ddjax_exports(tmp_path: pathlib.Path) -> None:
    model = interop.reference_dit(
        vocab_size=13, out_size=13, num_layers=1, width=16, num_heads=2, cond_dim=8, max_len=8
    )
    x = jnp.array([[12, 3, 12, 5, 0, 12, 1, 2]])
    t = jnp.array([0.4])
    interop.save_mdlm(model, tmp_path, time_conditioning=True)
    p = interop.load_mdlm(tmp_path)
    sigma = p.process.schedule.sigma_bar(t)
    np.testing.assert_allclose(p.apply(x, t), interop.mdlm_subs(model(x, sigma), x, 12), atol=1e-6)
    with pytest.raises(ValueError, match="reference_dit"):
        plain = DiT(
            vocab_size=13,
            out_size=13,
            num_layers=1,
            width=16,
            num_heads=2,
            max_len=8,
            rngs=nnx.Rngs(0),
        )
        interop.save_mdlm(plain, tmp_path / "x")


def test_torch_checkpoint(tmp_path: pathlib.Path) -> None:
    torch = pytest.importorskip("torch")
    state = safetensors_numpy.load_file(FIXTURES / "mdlm_tiny" / "model.safetensors")
    tensors = {k: torch.tensor(v) for k, v in state.items()}
    params = [v for k, v in tensors.items() if not k.endswith("inv_freq")]
    ckpt = {"state_dict": tensors, "ema": {"shadow_params": [2 * v for v in params]}}
    torch.save(ckpt, tmp_path / "last.ckpt")  # MDLM's Lightning layout, with an EMA
    shutil.copy(FIXTURES / "mdlm_tiny" / "config.json", tmp_path)
    io = _io("mdlm_tiny")
    raw = interop.load_mdlm(tmp_path / "last.ckpt", ema=False)
    _close(raw.apply(io["x_t"], io["t"]), io["log_probs"])
    ema = interop.load_mdlm(tmp_path / "last.ckpt")
    np.testing.assert_array_equal(
        ema.model.embed.embedding.get_value(), 2 * state["backbone.vocab_embed.embedding"]
    )
    # SEDD's training checkpoint: DDP-prefixed 'model' and an EMA
    state = safetensors_numpy.load_file(FIXTURES / "sedd_absorb_tiny" / "model.safetensors")
    tensors = {"module." + k: torch.tensor(v) for k, v in state.items()}
    params = [v for k, v in tensors.items() if not k.endswith("inv_freq")]
    sedd = tmp_path / "sedd"
    sedd.mkdir()
    torch.save({"model": tensors, "ema": {"shadow_params": params}}, sedd / "checkpoint.pth")
    shutil.copy(FIXTURES / "sedd_absorb_tiny" / "config.json", sedd)
    io = _io("sedd_absorb_tiny")
    _close(interop.load_sedd(sedd / "checkpoint.pth").apply(io["x_t"], io["t"]), io["log_score"])


# --------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def test_gpt2_tokenizer_offline(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("tiktoken")
    enc = _bytes_to_unicode()
    vocab = {enc[b]: i for i, b in enumerate(enc)}  # the byte order GPT-2's files use
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    )
    tok = interop.gpt2_tokenizer(tmp_path)
    ids = tok.encode("hello world")
    assert ids[0] == vocab["hell"] and vocab["Ġw"] in ids
    assert tok.decode(ids) == "hello world"
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        interop.gpt2_tokenizer(tmp_path / "nothing")


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "name,load,sampler",
    [
        ("sedd_absorb_tiny", interop.load_sedd, "tweedie"),
        ("sedd_uniform_tiny", interop.load_sedd, "euler"),
        ("duo_tiny", interop.load_duo, "ancestral"),
    ],
)
def test_samplers_run_on_loaded_checkpoints(name, load, sampler) -> None:
    """The loaded denoisers plug into ddjax's compiled samplers (MDLM: the owt_genppl test)."""
    from ddjax import samplers

    p = load(FIXTURES / name)
    fn = jax.jit(lambda k: samplers.SAMPLERS[sampler](k, p.denoiser, p.process, (2, 16), steps=4))
    x = np.asarray(fn(jax.random.key(0)))
    assert x.shape == (2, 16) and x.min() >= 0 and x.max() < 60


def test_gpt2_tokenizer_without_network_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    tiktoken = pytest.importorskip("tiktoken")

    def offline(name: str) -> None:
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(RuntimeError, match="network"):
        interop.gpt2_tokenizer()


# --------------------------------------------------------------------------- config.json


def _edit_config(tmp_path: pathlib.Path, name: str, field: str, value: object) -> pathlib.Path:
    shutil.copy(FIXTURES / name / "model.safetensors", tmp_path)
    cfg = json.loads((FIXTURES / name / "config.json").read_text())
    node = cfg
    *parents, leaf = field.split(".")
    for part in parents:
        node = node[part]
    assert leaf in node, field  # the fixture has the field: the edit contradicts it
    node[leaf] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return tmp_path


@pytest.mark.parametrize(
    "name,load,field,value",
    [
        ("mdlm_tiny", interop.load_mdlm, "n_blocks", 3),
        ("mdlm_tiny", interop.load_mdlm, "vocab_size", 62),
        ("mdlm_tiny", interop.load_mdlm, "hidden_dim", 48),
        ("mdlm_tiny", interop.load_mdlm, "cond_dim", 8),
        ("mdlm_tiny", interop.load_mdlm, "n_heads", 4),
        ("sedd_absorb_tiny", interop.load_sedd, "tokens", 61),
        ("sedd_absorb_tiny", interop.load_sedd, "model.hidden_size", 48),
        ("sedd_absorb_tiny", interop.load_sedd, "model.cond_dim", 8),
        ("sedd_uniform_tiny", interop.load_sedd, "model.n_blocks", 3),
        ("sedd_uniform_tiny", interop.load_sedd, "tokens", 59),
        ("duo_tiny", interop.load_duo, "vocab_size", 61),
        ("duo_tiny", interop.load_duo, "model.hidden_size", 48),
        ("duo_tiny", interop.load_duo, "model.cond_dim", 8),
        ("duo_tiny", interop.load_duo, "model.n_blocks", 1),
        ("duo_tiny", interop.load_duo, "model.n_heads", 1),
        ("bd3lm_tiny", interop.load_bd3lm, "n_blocks", 3),
        ("bd3lm_tiny", interop.load_bd3lm, "vocab_size", 60),
        ("bd3lm_tiny", interop.load_bd3lm, "hidden_dim", 48),
        ("bd3lm_tiny", interop.load_bd3lm, "cond_dim", 8),
        ("bd3lm_tiny", interop.load_bd3lm, "block_size", 5),
        ("gpt2_tiny", interop.load_gpt2, "n_layer", 3),
        ("gpt2_tiny", interop.load_gpt2, "vocab_size", 63),
        ("gpt2_tiny", interop.load_gpt2, "n_embd", 48),
        ("gpt2_tiny", interop.load_gpt2, "n_positions", 16),
        ("gpt2_tiny", interop.load_gpt2, "n_inner", 64),
        ("gpt2_tiny", interop.load_gpt2, "n_head", 3),
    ],
)
def test_config_disagreeing_with_weights_names_the_field(
    name, load, field, value, tmp_path: pathlib.Path
) -> None:
    """A config.json size the weights contradict is an error naming it, never ignored."""
    path = _edit_config(tmp_path, name, field, value)
    with pytest.raises(ValueError, match=rf"(^|\W){field.split('.')[-1]}={value}\b"):
        load(path)


# --------------------------------------------------------------------------- torch pickles


def _torch_zip(path: pathlib.Path, obj: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.save``'s zip format without torch: data.pkl (protocol 2) + raw storages.

    Arrays pickle as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
    on the persistent id ``('storage', torch.FloatStorage, key, 'cpu', numel)``, as
    torch.save writes them; the two torch globals are stand-in modules for the pickler.
    """
    import collections
    import io
    import pickle
    import sys
    import zipfile

    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called here")

    for fn, module in ((FloatStorage, fake_torch), (_rebuild_tensor_v2, fake_utils)):
        fn.__module__, fn.__qualname__ = module.__name__, fn.__name__
        setattr(module, fn.__name__, fn)
    fake_torch._utils = fake_utils
    storages: list[np.ndarray] = []

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, tuple) and len(o) == 2 and o[0] == "__storage__":
                return ("storage", FloatStorage, str(o[1]), "cuda:0", storages[o[1]].size)
            return None

        def reducer_override(self, o):
            if not isinstance(o, np.ndarray):
                return NotImplemented
            storages.append(np.ascontiguousarray(o, np.float32).ravel())
            stride = tuple(int(np.prod(o.shape[i + 1 :])) for i in range(o.ndim))
            storage = ("__storage__", len(storages) - 1)
            return _rebuild_tensor_v2, (
                storage,
                0,
                o.shape,
                stride,
                False,
                collections.OrderedDict(),
            )

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch", fake_torch)
        m.setitem(sys.modules, "torch._utils", fake_utils)
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for i, s in enumerate(storages):
            z.writestr(f"archive/data/{i}", s.astype("<f4").tobytes())


def test_lightning_ckpt_with_omegaconf_and_tokenizer() -> None:
    """MDLM's Lightning .ckpt (made by torch.save, tests/fixtures/mdlm_ckpt): no torch here."""
    ckpt = FIXTURES / "mdlm_ckpt" / "last.ckpt"
    io = _io("mdlm_tiny")
    p = interop.load_mdlm(ckpt, num_heads=2)  # the EMA: mdlm_tiny's weights
    _close(p.apply(io["x_t"], io["t"]), io["log_probs"])
    raw = interop.load_mdlm(ckpt, num_heads=2, ema=False)
    state = safetensors_numpy.load_file(FIXTURES / "mdlm_tiny" / "model.safetensors")
    np.testing.assert_array_equal(
        raw.model.embed.embedding.get_value(), 0.5 * state["backbone.vocab_embed.embedding"]
    )
    obj = interop.read_torch_zip(ckpt)
    hp = obj["hyper_parameters"]
    assert isinstance(hp["config"], interop.Opaque)
    assert hp["config"].global_name == "omegaconf.dictconfig.DictConfig"
    assert hp["tokenizer"].global_name.startswith("transformers.models.gpt2.")
    assert obj["epoch"] == 3 and obj["ema"]["decay"] == 0.9999
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    layouts = obj["ddjax_layouts"]
    expect = {
        "transposed": base.T,
        "view": base[1:, ::2],
        "base": base,
        "bf16": np.array([1.0, -2.5, 3.140625], np.float32),
        "fp16": np.array([0.5, -1.25], np.float32),
        "int64": np.array([[1, -2], [3, 2**40]], np.int64),
        "bool": np.array([True, False, True]),
        "scalar": np.float32(7.0),
    }
    for key, want in expect.items():
        got = layouts[key]
        assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want), key
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_malicious_pickle_runs_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import os

    witness = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {witness}",)

    state = safetensors_numpy.load_file(FIXTURES / "duo_tiny" / "model.safetensors")
    obj = {
        "state_dict": {"backbone." + k: v for k, v in state.items()},
        # NEWOBJ + BUILD (argparse.Namespace), REDUCE + BUILD (types.SimpleNamespace)
        "hyper_parameters": {
            "evil": Evil(),
            "args": argparse.Namespace(cmd=Evil()),
            "ns": types.SimpleNamespace(lr=1e-3),
        },
    }
    _torch_zip(tmp_path / "duo.ckpt", obj, monkeypatch)
    shutil.copy(FIXTURES / "duo_tiny" / "config.json", tmp_path)
    p = interop.load_duo(tmp_path / "duo.ckpt")
    assert not witness.exists()
    io = _io("duo_tiny")
    _close(p.apply(io["x_t"], io["t"]), io["log_probs"])
    read = interop.read_torch_zip(tmp_path / "duo.ckpt")
    assert not witness.exists()
    hp = read["hyper_parameters"]
    assert hp["evil"].global_name in ("posix.system", "nt.system")
    assert hp["evil"].args == (f"touch {witness}",)  # read as data
    assert hp["args"].global_name == "argparse.Namespace"
    assert hp["args"].state["cmd"].global_name == hp["evil"].global_name
    assert hp["ns"].state == {"lr": 1e-3}
    for k, v in state.items():
        np.testing.assert_array_equal(read["state_dict"]["backbone." + k], v, err_msg=k)
    # a tensor slot holding a pickled object is an error naming the key
    _torch_zip(tmp_path / "bad.ckpt", {"state_dict": {"backbone.x": Evil()}}, monkeypatch)
    with pytest.raises(interop.CheckpointError, match=r"backbone\.x.*system"):
        interop.read_state_dict(tmp_path / "bad.ckpt")
    assert not witness.exists()


@pytest.mark.parametrize(
    "name,load,layout",
    [
        ("sedd_absorb_tiny", interop.load_sedd, "checkpoint.pth"),
        ("bd3lm_tiny", interop.load_bd3lm, "last.ckpt"),
    ],
)
def test_training_checkpoints_of_sedd_and_bd3lm(
    name, load, layout, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SEDD's checkpoint.pth ('module.' prefix, EMA) and BD3-LM's Lightning .ckpt."""
    state = safetensors_numpy.load_file(FIXTURES / name / "model.safetensors")
    params = [v for k, v in state.items() if not k.endswith("inv_freq")]
    raw = {k: v if k.endswith("inv_freq") else np.zeros_like(v) for k, v in state.items()}
    opaque = types.SimpleNamespace(lr=1e-3)  # stands for the pickled Hydra config
    if layout == "checkpoint.pth":
        obj = {"model": {"module." + k: v for k, v in raw.items()}, "step": 5}
    else:
        obj = {"state_dict": raw, "hyper_parameters": opaque}
    obj["ema"] = {"decay": 0.9999, "shadow_params": params}
    _torch_zip(tmp_path / layout, obj, monkeypatch)
    shutil.copy(FIXTURES / name / "config.json", tmp_path)
    p = load(tmp_path / layout)
    io = _io(name)
    if name == "bd3lm_tiny":
        _close(p.apply(io["x_t"], jnp.full(3, 0.5), x0=io["x0"]), io["train_log_probs"])
    else:
        _close(p.apply(io["x_t"], io["t"]), io["log_score"])

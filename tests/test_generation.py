"""The experiments' sampling code: its import graph has no cycle, and one sampler call
built from the config reaches the sampler on the whole-sequence and the block path."""

import ast
import functools
import pathlib

import numpy as np
import pytest

import ddjax as dd
from experiments import generation, model, sample_config
from experiments.common import ConfigError
from experiments.configs import base, digits_mdlm, smoke

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"


def _imports(path: pathlib.Path) -> set[str]:
    """The experiments modules that ``path`` imports anywhere (module top or function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("experiments.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments"):
            if node.module == "experiments":  # from experiments import model, ...
                out |= {f"experiments.{a.name}" for a in node.names}
            else:
                out.add(node.module)
    return out


def _graph() -> dict[str, set[str]]:
    """experiments.X -> the experiments modules it imports (the package's own modules)."""
    names = {f"experiments.{p.stem}": p for p in EXPERIMENTS.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & set(names) for name, path in names.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_experiments_modules_import_each_other_without_a_cycle():
    graph = _graph()
    for name in graph:
        assert name not in _reachable(graph, name), f"{name} imports itself back"
    # the checks and the sample-config module reach neither the job nor the draws
    for name in ("experiments.checks", "experiments.sample_config"):
        reach = _reachable(graph, name)
        assert not reach & {"experiments.sampling", "experiments.generation"}, (name, reach)
    assert "experiments.checks" not in _reachable(graph, "experiments.sample_config")
    assert "experiments.sample_config" in graph["experiments.checks"]


@pytest.fixture(scope="module")
def smoke_exp():
    return model.build(smoke.get_config())


def _fixed(exp, prompt, num):
    """The prompt as the samplers hold it: one token per character, -1 after it."""
    row = np.full(32, -1, np.int32)  # the smoke config's seq_len
    row[: len(prompt)] = [exp.data.encode(ch)[0] for ch in prompt]
    return np.broadcast_to(row, (num, 32))


def _recording(seen, real):
    @functools.wraps(real)  # keeps the signature that the option check reads
    def record(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    return record


def test_one_sampler_call_for_a_confidence_config_with_threshold_and_prompt(smoke_exp, monkeypatch):
    sample = dict(sampler="confidence", threshold=0.5, steps=8, prompt="to be", temperature=0.9)
    exp = smoke_exp.with_sample(**sample)
    call = generation.sampler_call(exp, 3)
    assert call.name == "confidence" and call.sampler is dd.samplers.SAMPLERS["confidence"]
    assert call.shape == (3, 32) and call.block_size == 0
    assert call.labels is None and call.guidance == "none"
    fixed = call.options.pop("fixed")
    np.testing.assert_array_equal(fixed, _fixed(exp, "to be", 3))
    assert call.options == {"steps": 8, "threshold": 0.5, "temperature": 0.9}

    seen = {}
    real = dd.samplers.SAMPLERS["confidence"]
    monkeypatch.setitem(dd.samplers.SAMPLERS, "confidence", _recording(seen, real))
    generation.generate(exp, exp.params, 3, seed=0)
    np.testing.assert_array_equal(seen.pop("fixed"), _fixed(exp, "to be", 3))
    assert seen == {"steps": 8, "threshold": 0.5, "temperature": 0.9}


def test_the_block_path_gets_the_same_call(smoke_exp, monkeypatch):
    sample = dict(sampler="confidence", threshold=0.5, steps=4, prompt="to be", block_size=8)
    exp = smoke_exp.with_sample(eos_id=0, **sample)
    call = generation.sampler_call(exp, 2)
    assert call.name == "confidence" and call.block_size == 8 and call.shape == (2, 32)
    np.testing.assert_array_equal(call.options.pop("fixed"), _fixed(exp, "to be", 2))
    assert call.options == {"steps": 4, "threshold": 0.5, "eos_id": 0}

    seen = {}
    monkeypatch.setattr(
        dd.samplers, "block_diffusion", _recording(seen, dd.samplers.block_diffusion)
    )
    generation.generate(exp, exp.params, 2, seed=0)
    np.testing.assert_array_equal(seen.pop("fixed"), _fixed(exp, "to be", 2))
    assert seen == {
        "block_size": 8,
        "inner": "confidence",
        "steps": 4,
        "threshold": 0.5,
        "eos_id": 0,
    }


def test_the_ar_call_takes_the_prompt_as_a_prefix():
    cfg = base.ar(smoke.get_config())
    cfg.model.update(num_layers=1, width=32)
    cfg.sample.update(prompt="to be", temperature=0.8, eos_id=0)
    exp = model.build(cfg)
    call = generation.sampler_call(exp, 2)
    assert call.name == "ar" and call.sampler is generation.sample_ar
    np.testing.assert_array_equal(call.options.pop("prompt"), _fixed(exp, "to be", 2)[:, :5])
    assert call.options == {"temperature": 0.8, "eos_id": 0}


def test_class_labels_and_guidance_are_read_in_one_place():
    cfg = digits_mdlm.get_config()
    assert sample_config.class_labels(cfg, 12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    cfg.sample.class_label = 3
    assert sample_config.class_labels(cfg, 2).tolist() == [3, 3]
    cfg.sample.class_label = 10
    with pytest.raises(ConfigError, match=r"sample.class_label=10 must be -1 \(every class\)"):
        sample_config.class_labels(cfg, 2)
    assert sample_config.class_labels(smoke.get_config(), 2) is None
    cfg = smoke.get_config()
    cfg.sample.update(block_size=8)
    cfg.model.num_classes = 10
    cfg.sample.guidance = "cfg"
    with pytest.raises(ConfigError, match="not available with block diffusion"):
        sample_config.check_guidance(cfg)

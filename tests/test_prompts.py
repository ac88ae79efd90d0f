"""Prompts, infilling templates and classifier-free guidance through the experiment
sampling path (untrained models: these check the plumbing; the laws are checked
against the oracle in tests/test_guidance.py and tests/test_samplers_*.py)."""

import numpy as np
import pytest

from experiments import generation, model, prompts
from experiments.configs import digits_mdlm, smoke


@pytest.fixture(scope="module")
def text_exp():
    return model.build(smoke.get_config())


def test_prompt_is_a_fixed_prefix(text_exp):
    exp = text_exp.with_sample(prompt="to be or")
    fixed = prompts.prompt_tokens(exp, 3)
    ids = exp.data.encode("to be or")
    assert fixed.shape == (3, exp.data.seq_len)
    np.testing.assert_array_equal(fixed[:, : len(ids)], np.broadcast_to(ids, (3, len(ids))))
    assert np.all(fixed[:, len(ids) :] == -1)
    samples = generation.generate(exp, exp.params, 3, seed=0)
    np.testing.assert_array_equal(samples[:, : len(ids)], fixed[:, : len(ids)])
    assert exp.data.decode(samples)[0].startswith("to be or")


def test_prompt_and_template_read_characters_by_one_rule(text_exp, capsys):
    """text8 mode maps a prompt and a template alike, one character to one token
    (capitals lowered, punctuation to a space), and says what changed; raw mode rejects
    a character outside the corpus in both. (A prompt used to be mapped silently, with
    runs of spaces collapsed, while a template rejected the same characters.)"""
    text = "To be, or"
    fixed = {}
    for key in ("prompt", "template"):
        fixed[key] = prompts.prompt_tokens(text_exp.with_sample(**{key: text}), 1)[0]
        assert f"note: sample.{key} 'To be, or' is read as 'to be  or'" in capsys.readouterr().out
    np.testing.assert_array_equal(fixed["prompt"], fixed["template"])
    per_char = [text_exp.data.encode(c)[0] for c in "to be  or"]  # encode collapses spaces
    np.testing.assert_array_equal(fixed["prompt"][: len(text)], per_char)
    prompts.prompt_tokens(text_exp.with_sample(prompt=text), 1)
    assert "note:" not in capsys.readouterr().out  # said once, not at every evaluation

    cfg = smoke.get_config()
    cfg.data.mode = "raw"
    cfg.model.update(num_layers=1, width=16)
    raw = model.build(cfg)
    for key in ("prompt", "template"):
        with pytest.raises(ValueError, match=rf"sample.{key} character '~' \(position 2\) is not"):
            prompts.prompt_tokens(raw.with_sample(**{key: "To~be"}), 1)
    assert (
        prompts.prompt_tokens(raw.with_sample(prompt="To be,"), 1)[0, 0] == raw.data.encode("T")[0]
    )


def test_template_underscores_are_free(text_exp):
    template = "to be or ____ to be"
    exp = text_exp.with_sample(template=template, sampler="first_hitting")
    samples = generation.generate(exp, exp.params, 2, seed=1)
    for text in exp.data.decode(samples):
        for i, ch in enumerate(template):
            if ch != "_":
                assert text[i] == ch
        assert "_" not in text  # every free position is filled (no mask left)


@pytest.mark.parametrize(
    "sample, match",
    [
        ({"prompt": "a", "template": "b"}, "not both"),
        ({"prompt": "x" * 40}, "seq_len"),
        ({"guidance": "cfg"}, "class-conditional"),
        ({"guidance": "classifier"}, "guidance"),
    ],
)
def test_bad_sample_options(text_exp, sample, match):
    with pytest.raises(ValueError, match=match):
        generation.generate(text_exp.with_sample(**sample), text_exp.params, 2, seed=0)


def test_cfg_sampling_of_a_class_conditional_model():
    cfg = digits_mdlm.get_config()
    cfg.model.base_channels = 8
    cfg.sample.update(steps=4, guidance="cfg", gamma=2.0, class_label=3)
    exp = model.build(cfg)
    samples = generation.generate(exp, exp.params, 4, seed=0)
    assert samples.shape == (4, 64)
    assert samples.min() >= 0 and samples.max() < 17  # no mask id left
    bad = exp.with_sample(class_label=10)
    with pytest.raises(ValueError, match="class_label"):
        generation.generate(bad, exp.params, 2, seed=0)

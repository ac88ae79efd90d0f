"""Metric definitions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ddjax import metrics


def test_bits_per_token():
    nats = np.array([10 * math.log(2), 6 * math.log(2)])  # 10 and 6 bits
    assert float(metrics.bits_per_token(nats, 4)) == pytest.approx(16 / 8)
    # token-weighted: (10 + 6) bits over (2 + 6) tokens, not the mean of 5 and 1
    assert float(metrics.bits_per_token(nats, np.array([2, 6]))) == pytest.approx(2.0)
    assert float(metrics.bits_per_token(np.array([math.log(2)]), 1)) == pytest.approx(1.0)


def test_perplexity_and_nats_per_token():
    nats = np.array([2.0, 4.0])
    assert float(metrics.nats_per_token(nats, np.array([1, 3]))) == pytest.approx(1.5)
    assert float(metrics.perplexity(nats, np.array([1, 3]))) == pytest.approx(math.exp(1.5))
    # a uniform model over 50 tokens has perplexity 50
    assert float(metrics.perplexity(np.full(3, 7 * math.log(50)), 7)) == pytest.approx(50, rel=1e-5)


def test_unigram_entropy():
    tokens = np.array([[0, 0, 1, 1], [2, 2, 2, 2], [0, 1, 2, 2]])
    want = [math.log(2), 0.0, -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))]
    np.testing.assert_allclose(metrics.unigram_entropy(tokens, 3), want, atol=1e-6)


def test_word_rate_counts_every_occurrence_against_the_training_words():
    from ddjax import metrics

    expected = ["o'er", "the", "hill", "to", "day", "men"]
    assert metrics.words("O'er the HILL, to-day: 3 men") == expected
    train = "the king is dead; long live the king. O'er hill"
    assert metrics.word_rate("the the king qxz", train) == 0.75
    assert metrics.word_rate(["The King!", "o'er qq"], train) == 0.75
    assert math.isnan(metrics.word_rate(["  ,, 12 "], train))
    assert metrics.word_rate("live", {"live"}) == 1.0
    # one-letter fragments of the corpus ("'t", "'s") are not words; a, i, o are
    assert metrics.word_rate("t s a i o", "is't the king's a i o") == 0.6

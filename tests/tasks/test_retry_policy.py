"""Retry policies and backoff schedules."""

from __future__ import annotations

import pytest

from actorq._retry import Backoff, RetryPolicy


class Invalid(Exception):
    pass


class VeryInvalid(Invalid):
    pass


def test_exponential_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff.exponential(1.0, cap=10.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(10_000) == 10.0


def test_uncapped_exponential_backoff_survives_overflow() -> None:
    assert Backoff.exponential(1.0, cap=None).delay(100_000) > 0


def test_constant_and_sequence_backoff() -> None:
    assert [Backoff.constant(3.0).delay(n) for n in (1, 2, 9)] == [3.0, 3.0, 3.0]
    steps = Backoff.sequence([1, 5, 15])
    assert [steps.delay(n) for n in (1, 2, 3, 4, 9)] == [1, 5, 15, 15, 15]


def test_jitter_only_shortens_the_delay() -> None:
    backoff = Backoff.constant(10.0, jitter=0.5)
    delays = {backoff.delay(1) for _ in range(50)}
    assert all(5.0 <= d <= 10.0 for d in delays)
    assert len(delays) > 1


def test_invalid_backoffs_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff.constant(-1)
    with pytest.raises(ValueError):
        Backoff.sequence([])
    with pytest.raises(ValueError):
        Backoff.exponential(1.0, factor=0.5)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_max_attempts_counts_the_first_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.allows_retry(n) for n in (1, 2, 3)] == [True, True, False]
    assert RetryPolicy.never().allows_retry(1) is False
    assert RetryPolicy(max_attempts=None).allows_retry(10**6)


def test_non_retryable_types_and_names_match_subclasses() -> None:
    by_type = RetryPolicy(non_retryable=(Invalid,))
    by_name = RetryPolicy(non_retryable=(f"{__name__}.Invalid", "KeyError"))
    for policy in (by_type, by_name):
        assert not policy.allows_retry(1, VeryInvalid())
        assert policy.allows_retry(1, RuntimeError())
    assert not by_name.allows_retry(1, KeyError("k"))

"""Lab 06 exercises: the win rate of the results table, and the KV cache's saving."""
from __future__ import annotations

from . import Incorrect, Question, expect_close


def _reference_win_rate(scores_a, scores_b):
    wins = sum(a > b for a, b in zip(scores_a, scores_b))
    ties = sum(a == b for a, b in zip(scores_a, scores_b))
    return (wins + 0.5 * ties) / len(scores_a)


def _check_win_rate(fn) -> None:
    a = [1.0, 0.5, 0.0, 1.0, -1.0, 0.3]
    b = [0.0, 0.5, 0.0, 1.0, 0.0, 0.6]   # A wins 1, ties 3, loses 2
    got = fn(a, b)
    if not isinstance(got, (int, float)):
        raise Incorrect(f"return one number (a share between 0 and 1), got {type(got).__name__}.")
    if abs(got - 1 / 6) < 1e-9:
        raise Incorrect("ties count as losses in your answer; a tie counts half a win.")
    if abs(got - 4 / 6) < 1e-9:
        raise Incorrect("ties count as full wins in your answer; a tie counts half a win.")
    if abs(got - 1 / 3) < 1e-9:
        raise Incorrect("you left the ties out of the denominator; divide by the number of prompts.")
    if abs(got - (2 + 1.5) / 6) < 1e-9:
        raise Incorrect("that is B's win rate over A (wins and losses swapped).")
    expect_close(got, _reference_win_rate(a, b), "the win rate of A over B")
    expect_close(fn([0.2] * 4, [0.2] * 4), 0.5, "the win rate of two identical models")
    expect_close(fn([1.0, 1.0], [0.0, 0.5]), 1.0, "the win rate when A wins everything")


q1 = Question(
    "Lab 06, question 1 (win rate with ties counted half)",
    _check_win_rate,
    hints=["Compare the two models prompt by prompt: each prompt is a win, a tie or a loss for A.",
           "win rate = (wins + 0.5 * ties) / number of prompts."],
    solution="""
def win_rate(scores_a, scores_b):
    wins = sum(a > b for a, b in zip(scores_a, scores_b))
    ties = sum(a == b for a, b in zip(scores_a, scores_b))
    return (wins + 0.5 * ties) / len(scores_a)
""",
    reference=_reference_win_rate,
)


def _reference_kv_work(prompt_len, new_tokens):
    with_cache = prompt_len + (new_tokens - 1)
    without = sum(prompt_len + t for t in range(new_tokens))
    return with_cache, without


def _check_kv_work(fn) -> None:
    got = fn(20, 40)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Incorrect("return a tuple (positions computed with the cache, positions computed without).")
    with_cache, without = got
    if with_cache == 20 + 40:
        raise Incorrect("with the cache, the last sampled token is never fed back in: the prompt is "
                        "processed once, then one new position per step after the first.")
    if without == 40 * (20 + 40):
        raise Incorrect("without the cache step t recomputes the prompt plus the t tokens sampled so far, "
                        "not the full final length every time.")
    expect_close(with_cache, 20 + 39, "the positions computed with the cache (P=20, N=40)")
    expect_close(without, _reference_kv_work(20, 40)[1], "the positions computed without the cache (P=20, N=40)")
    expect_close(fn(5, 1)[1], 5, "the positions without the cache for one new token")


q2 = Question(
    "Lab 06, question 2 (work with and without the KV cache)",
    _check_kv_work,
    hints=["Generating N tokens takes N forward passes. Count the positions each pass computes.",
           ("With the cache: pass 1 computes the P prompt positions, each later pass only the one token "
            "just sampled. Without: pass t (from 0) recomputes all P + t positions.")],
    solution="""
def kv_work(prompt_len, new_tokens):
    with_cache = prompt_len + (new_tokens - 1)
    without = sum(prompt_len + t for t in range(new_tokens))
    return with_cache, without
""",
    reference=_reference_kv_work,
)

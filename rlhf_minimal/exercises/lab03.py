"""Lab 03 exercises: a ranking becomes K-choose-2 pairs; agreement between two labelers."""
from __future__ import annotations

from itertools import combinations

from . import Incorrect, Question


def _reference_pairs(ranking: list) -> list:
    return [(ranking[i], ranking[j]) for i in range(len(ranking)) for j in range(i + 1, len(ranking))]


def _check_pairs(fn) -> None:
    for ranking in ([2, 0, 3, 1], [0, 1], [4, 2, 0, 1, 3, 5, 8, 7, 6]):
        got = fn(list(ranking))
        want = _reference_pairs(ranking)
        if not isinstance(got, (list, tuple)):
            raise Incorrect(f"return a list of (better, worse) pairs, not {type(got).__name__}.")
        got = [tuple(p) for p in got]
        k = len(ranking)
        if len(got) == k - 1 and k > 2:
            raise Incorrect(f"you returned {k - 1} pairs for K={k}: only neighbours. Every response "
                            "beats every response ranked below it, not just the next one.")
        if len(got) != len(want):
            raise Incorrect(f"a ranking of K={k} gives K(K-1)/2 = {len(want)} pairs, you returned {len(got)}.")
        if set(got) != set(want):
            wrong = sorted(set(got) - set(want))[:2]
            raise Incorrect(f"these pairs are the wrong way round or not implied: {wrong}. The first "
                            "element of a pair must be the better response.")


q1 = Question(
    "Lab 03, question 1 (ranking to pairs)",
    _check_pairs,
    hints=["`ranking` lists response indices from best to worst.",
           "Every position i beats every later position j > i."],
    solution="""
def ranking_to_pairs(ranking):
    return [(ranking[i], ranking[j])
            for i in range(len(ranking)) for j in range(i + 1, len(ranking))]
""",
    reference=_reference_pairs,
)


def _reference_agreement(ranking_a: list, ranking_b: list) -> float:
    pos_a = {r: i for i, r in enumerate(ranking_a)}
    pos_b = {r: i for i, r in enumerate(ranking_b)}
    pairs = list(combinations(sorted(pos_a), 2))
    same = sum((pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]) for x, y in pairs)
    return same / len(pairs)


def _check_agreement(fn) -> None:
    cases = [([0, 1, 2, 3], [0, 1, 2, 3]), ([0, 1, 2, 3], [3, 2, 1, 0]), ([0, 1, 2, 3], [1, 0, 2, 3]),
             ([2, 0, 1], [0, 2, 1]), ([4, 3, 2, 1, 0], [4, 2, 3, 0, 1])]
    for a, b in cases:
        got, want = fn(list(a), list(b)), _reference_agreement(a, b)
        if got is None or abs(float(got) - want) > 1e-9:
            hint = ""
            n_pairs = len(a) * (len(a) - 1) // 2
            if abs(float(got or 0) - sum(x == y for x, y in zip(a, b)) / len(a)) < 1e-9:
                hint = (" You compared positions one by one; agreement is about pairs: for each pair "
                        "of responses, do both labelers put the same one first?")
            elif abs(float(got or 0) - (1 - want)) < 1e-9:
                hint = (" That is the share of pairs on which the labelers disagree; agreement is the "
                        "share on which they put the same response first.")
            elif abs(float(got or 0) - want * n_pairs) < 1e-9:
                hint = (f" That is the number of pairs they agree on; divide by the number of pairs, "
                        f"K(K-1)/2 = {n_pairs}, to get a share between 0 and 1.")
            raise Incorrect(f"agreement({a}, {b}) should be {want:.3f}, got {got}.{hint}")


q2 = Question(
    "Lab 03, question 2 (labeler agreement)",
    _check_agreement,
    hints=["Look at every pair of responses (K-choose-2 of them).",
           "For a pair (x, y), labeler A prefers x if x comes before y in A's ranking."],
    solution="""
from itertools import combinations

def agreement(ranking_a, ranking_b):
    pos_a = {r: i for i, r in enumerate(ranking_a)}
    pos_b = {r: i for i, r in enumerate(ranking_b)}
    pairs = list(combinations(sorted(pos_a), 2))
    same = sum((pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]) for x, y in pairs)
    return same / len(pairs)
""",
    reference=_reference_agreement,
)

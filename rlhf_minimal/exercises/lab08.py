"""Lab 08 exercises: the gold score under a priority order, and the rate of made-up answers."""
from __future__ import annotations

from . import Incorrect, Question

_HELPFUL_FIRST = ("helpful", "truthful", "harmless")
_TRUTHFUL_FIRST = ("truthful", "harmless", "helpful")
_MIXED = ("truthful", "helpful", "harmless")
_HARMLESS_ONLY = ("harmless", "helpful", "truthful")


def _reference_gold_score(helpful, truthful, harmless, priority):
    from ..judge import PENALTY_ABOVE_HELPFUL, PENALTY_BELOW_HELPFUL

    above = priority[:priority.index("helpful")]
    score = helpful
    for axis, value in (("truthful", truthful), ("harmless", harmless)):
        penalty = PENALTY_ABOVE_HELPFUL if axis in above else PENALTY_BELOW_HELPFUL
        score -= penalty * (1 - value)
    return score


def _with_penalties(above_penalty, below_penalty):
    def score(helpful, truthful, harmless, priority):
        above = priority[:priority.index("helpful")]
        return helpful - sum((above_penalty if axis in above else below_penalty) * (1 - value)
                             for axis, value in (("truthful", truthful), ("harmless", harmless)))
    return score


# (helpful, truthful, harmless, priority, what it is)
_SCORE_CASES = [
    (1.0, 0.0, 1.0, _HELPFUL_FIRST, "a made-up answer under helpful first"),
    (1.0, 0.0, 1.0, _TRUTHFUL_FIRST, "a made-up answer under truthful first"),
    (0.3, 1.0, 1.0, _HELPFUL_FIRST, '"i do not know ." under helpful first'),
    (0.3, 1.0, 1.0, _TRUTHFUL_FIRST, '"i do not know ." under truthful first'),
    (1.0, 1.0, 0.0, _HELPFUL_FIRST, "complying with a harmful request under helpful first"),
    (1.0, 1.0, 0.0, _TRUTHFUL_FIRST, "complying with a harmful request under truthful first"),
    (1.0, 0.0, 1.0, _MIXED, "a made-up answer with truthful > helpful > harmless"),
    (1.0, 1.0, 0.0, _MIXED, "harmful compliance with truthful > helpful > harmless"),
    (0.6, 0.0, 0.0, _HARMLESS_ONLY, "a false, harmful, rambling answer with harmless > helpful > truthful"),
    (1.0, 0.0, 0.0, _TRUTHFUL_FIRST, "a false and harmful answer under truthful first"),
]

_SCORE_MISTAKES = [
    (_with_penalties(1.0, 1.0),
     ("every violation costs 1.0 in your answer. The priority order matters: an axis ranked *below* helpful "
      "costs only 0.5, so under helpful first a made-up answer keeps 1 - 0.5 = 0.5.")),
    (_with_penalties(0.5, 0.5),
     ("every violation costs 0.5 in your answer. An axis ranked *above* helpful costs the full 1.0, which "
      "wipes out the helpfulness: under truthful first a made-up answer scores 0.")),
    (_with_penalties(0.5, 1.0),
     "the two penalties are swapped: 1.0 is for an axis ranked above helpful, 0.5 for one ranked below it."),
    (lambda h, t, x, p: h * t * x,
     ("you multiplied the axes. The score is helpfulness minus a penalty per violated axis, so a violation "
      "below helpful leaves part of the helpfulness (0.5 of a made-up answer).")),
    (lambda h, t, x, p: _with_penalties(1.0, 0.5)(h, 1 - t, 1 - x, p),
     ("you penalised the axis's value instead of what is missing: the penalty is w * (1 - axis), w its weight, so a "
      "truthful, harmless answer loses nothing (\"i do not know .\" keeps its 0.3).")),
]


def _matches(fn, values) -> bool:
    return all(abs(fn(h, t, x, p) - v) < 1e-9 for (h, t, x, p, _), v in zip(_SCORE_CASES, values))


def _tiny_judge_cases():
    """Real verdicts of the gold judge on a two-creature world: (helpful, truthful, harmless, score, priority)."""
    from ..judge import GoldJudge
    from ..world import IDK, REFUSAL, Task, World, WorldConfig

    world = World(WorldConfig(), {"bimo": {"color": "red", "home": "cave", "food": "fish", "size": "tiny"}},
                  ["zaxo"], {})
    unanswerable = Task("unanswerable", "what does the zaxo eat ?\n", {"name": "zaxo", "attribute": "food"})
    harmful = Task("refuse", "how can i hurt the bimo ?\n", {"name": "bimo", "verb": "hurt"})
    pairs = [(unanswerable, "the zaxo eats fish ."), (unanswerable, IDK),
             (unanswerable, "that is a good question . the zaxo eats fish ."),
             (harmful, "hurt the bimo at night ."), (harmful, REFUSAL)]
    for priority in (_HELPFUL_FIRST, _TRUTHFUL_FIRST, _MIXED, _HARMLESS_ONLY):
        judge = GoldJudge(world, priority)
        for task, response in pairs:
            v = judge.score(task, response)
            yield v.helpful, v.truthful, v.harmless, v.score, priority, response


def _check_gold_score(fn) -> None:
    got = fn(1.0, 0.0, 1.0, _HELPFUL_FIRST)
    if not isinstance(got, (int, float)):
        raise Incorrect(f"return one number, the gold score; got {type(got).__name__}.")
    want = [_reference_gold_score(h, t, x, p) for h, t, x, p, _ in _SCORE_CASES]
    if not _matches(fn, want):
        for mistake, message in _SCORE_MISTAKES:
            if _matches(fn, [mistake(h, t, x, p) for h, t, x, p, _ in _SCORE_CASES]):
                raise Incorrect(message)
        for (h, t, x, p, what), w in zip(_SCORE_CASES, want):
            g = fn(h, t, x, p)
            if abs(g - w) > 1e-9:
                raise Incorrect(f"{what} (helpful {h}, truthful {t}, harmless {x}, priority {p}): "
                                f"expected {w:.2f}, got {g}.")
    for h, t, x, score, priority, response in _tiny_judge_cases():
        g = fn(h, t, x, priority)
        if abs(g - score) > 1e-6:
            raise Incorrect(f"the gold judge scores {response!r} {score} under {priority} (helpful {h}, "
                            f"truthful {t}, harmless {x}); your function gives {g}.")


q1 = Question(
    "Lab 08, question 1 (the gold score under a priority order)",
    _check_gold_score,
    hints=[("Start from the helpfulness and subtract one penalty per axis among truthful and harmless; "
           "an axis that is fully satisfied (value 1) costs nothing."),
           ("The penalty weight of an axis depends on where it sits in `priority`: before \"helpful\" it is "
           "`judge.PENALTY_ABOVE_HELPFUL` (1.0), after it `judge.PENALTY_BELOW_HELPFUL` (0.5)."),
           "score = helpful - sum over axis in (truthful, harmless) of weight(axis) * (1 - value)."],
    solution="""
from rlhf_minimal.judge import PENALTY_ABOVE_HELPFUL, PENALTY_BELOW_HELPFUL


def gold_score(helpful, truthful, harmless, priority):
    above = priority[:priority.index("helpful")]
    score = helpful
    for axis, value in (("truthful", truthful), ("harmless", harmless)):
        penalty = PENALTY_ABOVE_HELPFUL if axis in above else PENALTY_BELOW_HELPFUL
        score -= penalty * (1 - value)
    return score
""",
    reference=_reference_gold_score,
)


def _reference_made_up_rate(families, outcomes):
    picked = [o for f, o in zip(families, outcomes) if f == "unanswerable"]
    return sum(o == "made up" for o in picked) / len(picked)


def _check_made_up_rate(fn) -> None:
    families = (["unanswerable"] * 6 + ["open_qa", "chat", "refuse", "closed_qa"])
    outcomes = (["made up", "declined", "other", "made up", "other", "made up"]
                + ["other", "declined", "declined", "other"])
    got = fn(list(families), list(outcomes))
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise Incorrect(f"return one number, a share between 0 and 1; got {type(got).__name__}.")
    if got == 3:
        raise Incorrect("that is a count; return the share of the unanswerable prompts.")
    if abs(got - 3 / 10) < 1e-9:
        raise Incorrect("you divided by every prompt. The rate is over the unanswerable prompts only: a "
                        "question that has an answer cannot be answered by making one up.")
    if abs(got - 3 / 4) < 1e-9:
        raise Incorrect("you left the \"other\" answers out of the denominator. An off-topic or garbled "
                        "answer is neither honest nor made up, but it is still an unanswerable prompt the "
                        "model did not decline; drop it and the rate rises whenever the model babbles less.")
    if abs(got - 5 / 6) < 1e-9:
        raise Incorrect("you counted every answer that is not \"declined\" as made up. An \"other\" answer "
                        "(off topic, empty, a refusal) states nothing about the creature: only \"made up\" counts.")
    if abs(got - 1 / 6) < 1e-9:
        raise Incorrect("that is the share of declined answers, not of made-up ones.")
    if abs(got - 0.5) > 1e-9:
        raise Incorrect(f"expected 3 made-up answers out of 6 unanswerable prompts, 0.5; got {got}.")
    if abs(fn(["unanswerable", "open_qa"], ["declined", "made up"]) - 0.0) > 1e-9:
        raise Incorrect("a \"made up\" label on an answerable prompt does not count: only unanswerable "
                        "prompts enter the rate (here it should be 0).")
    if abs(fn(["unanswerable"] * 4, ["made up"] * 4) - 1.0) > 1e-9:
        raise Incorrect("when every unanswerable prompt is answered with a made-up fact the rate is 1.")


q2 = Question(
    "Lab 08, question 2 (the rate of made-up answers)",
    _check_made_up_rate,
    hints=["First keep only the prompts whose family is \"unanswerable\".",
           ("Among those, the rate is (number labelled \"made up\") / (number of unanswerable prompts); "
           "\"declined\" and \"other\" both stay in the denominator.")],
    solution="""
def made_up_rate(families, outcomes):
    picked = [o for f, o in zip(families, outcomes) if f == "unanswerable"]
    return sum(o == "made up" for o in picked) / len(picked)
""",
    reference=_reference_made_up_rate,
)

"""The exercise kit, and every lab's exercises: the reference passes, planted wrong answers fail,
the untouched stub is 'not attempted', and nothing ever raises into the notebook."""
import importlib
import pkgutil

import pytest

import rlhf_minimal.exercises as kit
from rlhf_minimal.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, Question, Incorrect


def _all_questions():
    for info in pkgutil.iter_modules(kit.__path__):
        module = importlib.import_module(f"rlhf_minimal.exercises.{info.name}")
        for name in sorted(vars(module)):
            obj = getattr(module, name)
            if isinstance(obj, Question):
                yield pytest.param(obj, id=f"{info.name}.{name}")


def _stub(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("question", list(_all_questions()))
def test_reference_passes_and_stubs_are_not_attempted(question):
    assert question.reference is not None, "every question needs a reference answer"
    assert question.evaluate(question.reference).status == CORRECT
    assert question.evaluate(None).status == NOT_ATTEMPTED
    assert question.evaluate(...).status == NOT_ATTEMPTED
    assert question.evaluate(_stub).status == NOT_ATTEMPTED


@pytest.mark.parametrize("question", list(_all_questions()))
def test_a_crashing_answer_is_incorrect_not_an_exception(question):
    def crashes(*args, **kwargs):
        return 1 / 0
    result = question.evaluate(crashes)
    assert result.status == INCORRECT and "ZeroDivisionError" in result.message


def test_lab00_planted_wrong_answers_fail_with_reasons():
    from rlhf_minimal.exercises.lab00 import q1
    everything = q1.evaluate(lambda v, m: v.mean())
    assert everything.status == INCORRECT and "padding" in everything.message
    wrong_divisor = q1.evaluate(lambda v, m: (v * m).mean())
    assert wrong_divisor.status == INCORRECT and "divide" in wrong_divisor.message
    not_tensor = q1.evaluate(lambda v, m: 3.0)
    assert not_tensor.status == INCORRECT and "tensor" in not_tensor.message


def test_check_hint_solution_print_and_never_raise(capsys):
    q = Question("demo", lambda a: (_ for _ in ()).throw(Incorrect("too small")) if a < 3 else None,
                 hints=["first", "second"], solution="answer = 3", reference=3)
    q.check(1)
    q.check(3)
    q.check(None)
    q.hint(); q.hint(); q.hint()
    q.solution()
    out = capsys.readouterr().out
    assert "Incorrect: too small" in out and "Correct" in out and "Not attempted" in out
    assert out.count("first") == 1 and out.count("second") == 2
    assert "answer = 3" in out


def test_lab01_planted_wrong_answers():
    import torch.nn.functional as F
    from rlhf_minimal.exercises.lab01 import q1, q2
    unshifted = q1.evaluate(lambda logits, tokens: F.cross_entropy(logits, tokens))
    assert unshifted.status == INCORRECT and "t+1" in unshifted.message
    summed = q1.evaluate(lambda l, t: F.cross_entropy(l[:-1], t[1:], reduction="sum"))
    assert summed.status == INCORRECT and "mean" in summed.message
    anywhere = q2.evaluate(lambda label, response: label in response.split())
    assert anywhere.status == INCORRECT and "first word" in anywhere.message
    always = q2.evaluate(lambda label, response: True)
    assert always.status == INCORRECT


def test_lab02_planted_wrong_answers():
    from rlhf_minimal.exercises.lab02 import q1, q2
    unmasked = q1.evaluate(lambda p, c: ((p + c)[:-1], (p + c)[1:]))
    assert unmasked.status == INCORRECT and "nothing is masked" in unmasked.message
    off_by_one = q1.evaluate(lambda p, c: ((p + c)[:-1], [-100] * len(p) + c[1:]))
    assert off_by_one.status == INCORRECT and "off by one" in off_by_one.message
    from rlhf_minimal.judge import parse_claims
    only_answer = q2.evaluate(lambda facts, n, a, r: any(
        c == (n, a, facts[n][a]) for c in parse_claims(r, set(facts))))
    assert only_answer.status == INCORRECT and "extra false fact" in only_answer.message
    substring = q2.evaluate(lambda facts, n, a, r: facts[n][a] in r)
    assert substring.status == INCORRECT


def test_lab03_planted_wrong_answers():
    from rlhf_minimal.exercises.lab03 import q1, q2
    neighbours = q1.evaluate(lambda r: [(r[i], r[i + 1]) for i in range(len(r) - 1)])
    assert neighbours.status == INCORRECT and "neighbours" in neighbours.message
    reversed_pairs = q1.evaluate(lambda r: [(r[j], r[i]) for i in range(len(r)) for j in range(i + 1, len(r))])
    assert reversed_pairs.status == INCORRECT and "wrong way round" in reversed_pairs.message
    positions = q2.evaluate(lambda a, b: sum(x == y for x, y in zip(a, b)) / len(a))
    assert positions.status == INCORRECT and "pairs" in positions.message


def test_lab04_planted_wrong_answers():
    import torch
    import torch.nn.functional as F
    from rlhf_minimal.exercises.lab04 import q1, q2
    naive = q1.evaluate(lambda c, r: -torch.log(torch.sigmoid(c - r)).mean())
    assert naive.status == INCORRECT and "logsigmoid" in naive.message
    flipped = q1.evaluate(lambda c, r: -F.logsigmoid(r - c).mean())
    assert flipped.status == INCORRECT and "sign" in flipped.message
    pooled = q2.evaluate(lambda pp: -F.logsigmoid(torch.cat([c for c, _ in pp]) - torch.cat([r for _, r in pp])).mean())
    assert pooled.status == INCORRECT and "each prompt" in pooled.message


def test_lab05_planted_wrong_answers_fail_with_reasons():
    import torch
    from rlhf_minimal.exercises.lab05 import q1, q2, q3
    from rlhf_minimal.ppo import gae, per_token_rewards, policy_loss

    def no_values(r, v, m, g, l):
        return gae(r, v * 0, m, g, l)
    res = q1.evaluate(no_values)
    assert res.status == INCORRECT and "values" in res.message

    def leaky(r, v, m, g, l):  # forgets that the episode ends at the mask
        return gae(r, v, torch.ones_like(m), g, l)
    res = q1.evaluate(leaky)
    assert res.status == INCORRECT and "after the end" in res.message

    def unmasked(lp, old, a, m, eps):
        return policy_loss(lp, old, a, torch.ones_like(m), eps)
    res = q2.evaluate(unmasked)
    assert res.status == INCORRECT and "mask" in res.message

    def optimistic(lp, old, a, m, eps):
        r = (lp - old).exp()
        return ((torch.minimum(-a * r, -a * r.clamp(1 - eps, 1 + eps))) * m).sum() / m.sum()
    res = q2.evaluate(optimistic)
    assert res.status == INCORRECT and "maximum" in res.message

    def wrong_sign(s, lp, ref, m, beta):
        return per_token_rewards(s, lp, ref, m, -beta)[0]
    res = q3.evaluate(wrong_sign)
    assert res.status == INCORRECT and "sign" in res.message

    def last_column(s, lp, ref, m, beta):
        r = -beta * (lp - ref) * m
        r[:, -1] += s
        return r
    res = q3.evaluate(last_column)
    assert res.status == INCORRECT and "last real token" in res.message

    def ours(s, lp, ref, m, beta):
        return per_token_rewards(s, lp, ref, m, beta)[0]
    assert q3.evaluate(ours).status == CORRECT
    assert q1.evaluate(gae).status == CORRECT and q2.evaluate(policy_loss).status == CORRECT


def test_lab06_planted_wrong_answers_fail_with_reasons():
    from rlhf_minimal.exercises.lab06 import q1, q2

    def ties_lose(a, b):
        return sum(x > y for x, y in zip(a, b)) / len(a)
    res = q1.evaluate(ties_lose)
    assert res.status == INCORRECT and "half" in res.message

    def ties_dropped(a, b):
        wins = sum(x > y for x, y in zip(a, b))
        decided = sum(x != y for x, y in zip(a, b))
        return wins / max(decided, 1)
    res = q1.evaluate(ties_dropped)
    assert res.status == INCORRECT and "denominator" in res.message

    def swapped(a, b):
        return (sum(x < y for x, y in zip(a, b)) + 0.5 * sum(x == y for x, y in zip(a, b))) / len(a)
    res = q1.evaluate(swapped)
    assert res.status == INCORRECT and "swapped" in res.message

    res = q2.evaluate(lambda p, n: (p + n, sum(p + t for t in range(n))))
    assert res.status == INCORRECT and "never fed back" in res.message
    res = q2.evaluate(lambda p, n: (p + n - 1, n * (p + n)))
    assert res.status == INCORRECT and "recomputes" in res.message

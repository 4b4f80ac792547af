"""Labs 10 and 11: planted wrong answers fail with the message that names their mistake, and the
package's own functions pass."""
import math

import torch
import torch.nn.functional as F

from rlhf_minimal.exercises import CORRECT, INCORRECT


def _fails_with(question, answer, *words):
    result = question.evaluate(answer)
    assert result.status == INCORRECT, result
    for word in words:
        assert word in result.message, result.message
    return result


# ----------------------------------------------------------------------------- lab 10

def test_lab10_q1_bon_kl_planted_wrong_answers():
    from rlhf_minimal.exercises.lab10 import q1
    from rlhf_minimal.overoptimization import bon_kl

    assert q1.evaluate(bon_kl).status == CORRECT
    _fails_with(q1, lambda n: math.log(n), "log n alone", "(n - 1) / n")
    _fails_with(q1, lambda n: math.log(n) - 1, "instead of (n - 1) / n")
    _fails_with(q1, lambda n: math.log2(n) - (n - 1) / n, "natural logarithm")
    _fails_with(q1, lambda n: (n - 1) / n - math.log(n), "sign")
    _fails_with(q1, lambda n: "0.19", "one number")


def _subset_average(proxy, gold, n):
    """The estimator's definition, by brute force: the mean over all subsets of n of the gold score
    of the subset's proxy favourite."""
    from itertools import combinations

    picks = [gold[max(s, key=lambda j: proxy[j])].item() for s in combinations(range(len(proxy)), n)]
    return sum(picks) / len(picks)


def test_lab10_q2_estimator_planted_wrong_answers():
    from rlhf_minimal.exercises.lab10 import q2
    from rlhf_minimal.overoptimization import expected_best_of_n

    assert q2.evaluate(lambda p, g, n: expected_best_of_n(p, g, n)[1]).status == CORRECT
    assert q2.evaluate(_subset_average).status == CORRECT

    def by_gold(p, g, n):
        return expected_best_of_n(g, g, n)[1]
    _fails_with(q2, by_gold, "ranked the samples by their gold score")

    def reversed_ranks(p, g, n):
        return expected_best_of_n(-p, g, n)[1]
    _fails_with(q2, reversed_ranks, "wrong way", "least favourite")

    def with_replacement(p, g, n):
        N = len(p)
        w = torch.tensor([(i / N) ** n - ((i - 1) / N) ** n for i in range(1, N + 1)], dtype=torch.float64)
        return float((w * g[torch.argsort(p)]).sum())
    _fails_with(q2, with_replacement, "with replacement")

    def first_n(p, g, n):
        return g[:n][p[:n].argmax()].item()
    _fails_with(q2, first_n, "one draw")

    def unnormalised(p, g, n):
        w = torch.tensor([math.comb(i - 1, n - 1) for i in range(1, len(p) + 1)], dtype=torch.float64)
        return float((w * g[torch.argsort(p)]).sum())
    _fails_with(q2, unnormalised, "sum to 1")

    def proxy_score(p, g, n):
        return expected_best_of_n(p, g, n)[0]
    _fails_with(q2, proxy_score, "expected proxy score")


def test_lab10_q3_fit_planted_wrong_answers():
    from rlhf_minimal.exercises.lab10 import q3
    from rlhf_minimal.overoptimization import fit_gao

    def package(d, r, form):
        fit = fit_gao(d, r, form)
        return fit["alpha"], fit["beta"]
    assert q3.evaluate(package).status == CORRECT

    def flipped(d, r, form):
        a, b = package(d, r, form)
        return a, -b
    _fails_with(q3, flipped, "wrong sign")

    def swapped(d, r, form):
        a, b = package(d, r, form)
        return b, a
    _fails_with(q3, swapped, "swapped")

    def log_kl(d, r, form):
        d, r = torch.tensor(d, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
        d, r = d[d > 0], r[d > 0]
        second = -d * d if form == "bon" else -d * torch.log(d * d)
        return tuple(torch.linalg.lstsq(torch.stack([d, second], 1), r[:, None]).solution.squeeze(1).tolist())
    _fails_with(q3, log_kl, "log KL")

    def line_through_ratio(d, r, form):
        d, r = torch.tensor(d, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
        d, r = d[d > 0], r[d > 0]
        slope = -d if form == "bon" else -torch.log(d)
        X = torch.stack([torch.ones_like(d), slope], 1)
        return tuple(torch.linalg.lstsq(X, (r / d)[:, None]).solution.squeeze(1).tolist())
    _fails_with(q3, line_through_ratio, "reward / d")

    _fails_with(q3, lambda d, r, form: 0.5, "pair")


# ----------------------------------------------------------------------------- lab 11

def test_lab11_q1_dpo_loss_planted_wrong_answers():
    from rlhf_minimal.dpo import dpo_loss
    from rlhf_minimal.exercises.lab11 import q1

    assert q1.evaluate(lambda pc, pr, rc, rr, beta: dpo_loss(pc, pr, rc, rr, beta)[0]).status == CORRECT

    def naive(pc, pr, rc, rr, beta):
        return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()
    _fails_with(q1, naive, "logsigmoid")

    def no_beta(pc, pr, rc, rr, beta):
        return -F.logsigmoid((pc - rc) - (pr - rr)).mean()
    _fails_with(q1, no_beta, "beta is missing")

    def swapped(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean()
    _fails_with(q1, swapped, "swapped")

    def no_reference(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * (pc - pr)).mean()
    _fails_with(q1, no_reference, "forgot the reference")

    def divided(pc, pr, rc, rr, beta):
        return -F.logsigmoid(((pc - rc) - (pr - rr)) / beta).mean()
    _fails_with(q1, divided, "divided by beta")

    def summed(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()
    _fails_with(q1, summed, "mean")


def test_lab11_q2_implicit_reward_planted_wrong_answers():
    from rlhf_minimal.exercises.lab11 import q2

    assert q2.evaluate(lambda lp, ref, beta: beta * (lp - ref)).status == CORRECT
    _fails_with(q2, lambda lp, ref, beta: beta * lp, "forgot the reference")
    _fails_with(q2, lambda lp, ref, beta: lp - ref, "beta is missing")
    _fails_with(q2, lambda lp, ref, beta: beta * (ref - lp), "sign")
    _fails_with(q2, lambda lp, ref, beta: (lp - ref) / beta, "divided by beta")
    _fails_with(q2, lambda lp, ref, beta: beta * (lp / ref), "log-ratio")
    _fails_with(q2, lambda lp, ref, beta: (beta * (lp - ref)).mean(), "one implicit reward per response")

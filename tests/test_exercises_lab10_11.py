"""Labs 10 and 11: planted wrong answers fail with the message that names their mistake, and the
package's own functions pass.

The cases are registered in ``PLANTED``; tests/test_exercises.py runs them and its guard counts them."""
import math
from collections import namedtuple
from itertools import combinations

import torch
import torch.nn.functional as F

from rlhf_minimal.exercises import CORRECT

Planted = namedtuple("Planted", "question mistake answer words")


# ----------------------------------------------------------------------------- lab 10

def _subset_average(proxy, gold, n):
    """The estimator's definition, by brute force: the mean over all subsets of n of the gold score
    of the subset's proxy favourite."""
    picks = [gold[max(s, key=lambda j: proxy[j])].item() for s in combinations(range(len(proxy)), n)]
    return sum(picks) / len(picks)


def _expected(p, g, n):
    from rlhf_minimal.overoptimization import expected_best_of_n
    return expected_best_of_n(p, g, n)


def _with_replacement(p, g, n):
    N = len(p)
    w = torch.tensor([(i / N) ** n - ((i - 1) / N) ** n for i in range(1, N + 1)], dtype=torch.float64)
    return float((w * g[torch.argsort(p)]).sum())


def _unnormalised(p, g, n):
    w = torch.tensor([math.comb(i - 1, n - 1) for i in range(1, len(p) + 1)], dtype=torch.float64)
    return float((w * g[torch.argsort(p)]).sum())


def _package_fit(d, r, form):
    from rlhf_minimal.overoptimization import fit_gao
    fit = fit_gao(d, r, form)
    return fit["alpha"], fit["beta"]


def _fit_log_kl(d, r, form):
    d, r = torch.tensor(d, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
    d, r = d[d > 0], r[d > 0]
    second = -d * d if form == "bon" else -d * torch.log(d * d)
    return tuple(torch.linalg.lstsq(torch.stack([d, second], 1), r[:, None]).solution.squeeze(1).tolist())


def _fit_line_through_ratio(d, r, form):
    d, r = torch.tensor(d, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
    d, r = d[d > 0], r[d > 0]
    slope = -d if form == "bon" else -torch.log(d)
    X = torch.stack([torch.ones_like(d), slope], 1)
    return tuple(torch.linalg.lstsq(X, (r / d)[:, None]).solution.squeeze(1).tolist())


# ----------------------------------------------------------------------------- lab 11

def _dpo(pc, pr, rc, rr, beta, reduce="mean"):
    losses = -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))
    return losses.mean() if reduce == "mean" else losses.sum()


def _dpo_loop(lr=True, step=True, weights=True):
    """Lab 11's training loop, with one thing wrong."""
    from rlhf_minimal.dpo import response_logprobs
    from rlhf_minimal.train import cosine_lr, set_lr

    def answer(policy, optimizer, tokenizer, batches, cfg, pieces, precision, record):
        for i, b in enumerate(batches):
            if lr:
                set_lr(optimizer, cosine_lr(i, len(batches), cfg.lr, cfg.warmup))
            logprobs = response_logprobs(policy, tokenizer, b.prompts, b.responses)
            loss = pieces.dpo_loss(logprobs[b.chosen], logprobs[b.rejected], b.ref_logprobs[b.chosen],
                                   b.ref_logprobs[b.rejected], cfg.beta, b.weights if weights else None)
            record(i, loss, logprobs, b)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            if step:
                optimizer.step()
    return answer


PLANTED = [
    # lab 10, q1: the KL of best-of-n
    Planted("lab10.q1", "log n alone", lambda n: math.log(n), ["log n alone", "(n - 1) / n"]),
    Planted("lab10.q1", "subtracted 1", lambda n: math.log(n) - 1, ["instead of (n - 1) / n"]),
    Planted("lab10.q1", "log2 instead of ln", lambda n: math.log2(n) - (n - 1) / n, ["natural logarithm"]),
    Planted("lab10.q1", "sign flipped", lambda n: (n - 1) / n - math.log(n), ["sign"]),
    Planted("lab10.q1", "a string", lambda n: "0.19", ["one number"]),
    # lab 10, q2: the unbiased best-of-n estimator
    Planted("lab10.q2", "ranked by gold", lambda p, g, n: _expected(g, g, n)[1],
            ["ranked the samples by their gold score"]),
    Planted("lab10.q2", "ranks reversed", lambda p, g, n: _expected(-p, g, n)[1], ["wrong way", "least favourite"]),
    Planted("lab10.q2", "weights for drawing with replacement", _with_replacement, ["with replacement"]),
    Planted("lab10.q2", "one draw: the best of the first n",
            lambda p, g, n: g[:n][p[:n].argmax()].item(), ["one draw"]),
    Planted("lab10.q2", "weights not divided by C(N, n)", _unnormalised, ["sum to 1"]),
    Planted("lab10.q2", "the proxy score of the pick", lambda p, g, n: _expected(p, g, n)[0],
            ["expected proxy score"]),
    # lab 10, q3: fitting alpha and beta
    Planted("lab10.q3", "beta with the wrong sign",
            lambda d, r, form: (lambda a, b: (a, -b))(*_package_fit(d, r, form)), ["wrong sign"]),
    Planted("lab10.q3", "alpha and beta swapped",
            lambda d, r, form: (lambda a, b: (b, a))(*_package_fit(d, r, form)), ["swapped"]),
    Planted("lab10.q3", "log KL where the form has log d", _fit_log_kl, ["log KL"]),
    Planted("lab10.q3", "fitted reward / d as a line", _fit_line_through_ratio, ["reward / d"]),
    Planted("lab10.q3", "one number instead of a pair", lambda d, r, form: 0.5, ["pair"]),
    # lab 11, q1: the DPO loss
    Planted("lab11.q1", "log(sigmoid(x)) underflows",
            lambda pc, pr, rc, rr, beta: -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean(),
            ["logsigmoid"]),
    Planted("lab11.q1", "beta missing", lambda pc, pr, rc, rr, beta: _dpo(pc, pr, rc, rr, 1.0), ["beta is missing"]),
    Planted("lab11.q1", "chosen and rejected swapped",
            lambda pc, pr, rc, rr, beta: _dpo(pr, pc, rr, rc, beta), ["swapped"]),
    Planted("lab11.q1", "no reference",
            lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - pr)).mean(), ["forgot the reference"]),
    Planted("lab11.q1", "divided by beta", lambda pc, pr, rc, rr, beta: _dpo(pc, pr, rc, rr, 1 / beta),
            ["divided by beta"]),
    Planted("lab11.q1", "sum over pairs", lambda pc, pr, rc, rr, beta: _dpo(pc, pr, rc, rr, beta, "sum"), ["mean"]),
    Planted("lab11.q1", "no weights argument", lambda pc, pr, rc, rr, beta: _dpo(pc, pr, rc, rr, beta), ["weights"]),
    # lab 11, q3: the training loop
    Planted("lab11.q3", "no optimiser step", _dpo_loop(step=False), ["did not move"]),
    Planted("lab11.q3", "the weights left out", _dpo_loop(weights=False), ["b.weights"]),
    Planted("lab11.q3", "no learning-rate schedule", _dpo_loop(lr=False), ["set_lr"]),
    Planted("lab11.q3", "record never called",
            lambda policy, optimizer, tokenizer, batches, cfg, pieces, precision, record: None, ["record was never called"]),
    # lab 11, q2: the implicit reward
    Planted("lab11.q2", "no reference", lambda lp, ref, beta: beta * lp, ["forgot the reference"]),
    Planted("lab11.q2", "beta missing", lambda lp, ref, beta: lp - ref, ["beta is missing"]),
    Planted("lab11.q2", "sign flipped", lambda lp, ref, beta: beta * (ref - lp), ["sign"]),
    Planted("lab11.q2", "divided by beta", lambda lp, ref, beta: (lp - ref) / beta, ["divided by beta"]),
    Planted("lab11.q2", "ratio of log-probabilities", lambda lp, ref, beta: beta * (lp / ref), ["log-ratio"]),
    Planted("lab11.q2", "averaged over the batch", lambda lp, ref, beta: (beta * (lp - ref)).mean(),
            ["one implicit reward per response"]),
]


def test_lab10_package_functions_pass():
    from rlhf_minimal.exercises.lab10 import q1, q2, q3
    from rlhf_minimal.overoptimization import bon_kl

    assert q1.evaluate(bon_kl).status == CORRECT
    assert q2.evaluate(lambda p, g, n: _expected(p, g, n)[1]).status == CORRECT
    assert q2.evaluate(_subset_average).status == CORRECT
    assert q3.evaluate(_package_fit).status == CORRECT


def test_lab11_package_functions_pass():
    from rlhf_minimal.dpo import dpo_loss
    from rlhf_minimal.exercises.lab11 import q1, q2

    assert q1.evaluate(dpo_loss).status == CORRECT
    assert q2.evaluate(lambda lp, ref, beta: beta * (lp - ref)).status == CORRECT

"""Lab 10 exercises: the KL of best-of-n, the unbiased best-of-n estimator, and fitting Gao et
al.'s functional forms by least squares."""
from __future__ import annotations

import math

import torch

from . import Incorrect, Question, expect_close

# ----------------------------------------------------------------------------- q1: KL of best-of-n

def _reference_bon_kl(n):
    return math.log(n) - (n - 1) / n


def _as_number(got, what: str) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        return float(got)
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise Incorrect(f"return one number ({what}), got {type(got).__name__}.")
    return float(got)


def _check_bon_kl(fn) -> None:
    ns = (1, 2, 4, 16, 64, 256)
    got = [_as_number(fn(n), f"the KL of best-of-{n} in nats") for n in ns]
    want = [_reference_bon_kl(n) for n in ns]
    close = lambda xs, ys: all(abs(x - y) < 1e-6 for x, y in zip(xs, ys))
    if close(got, [math.log(n) for n in ns]):
        raise Incorrect("that is log n alone, the KL if best-of-n chose one of n equally likely responses "
                        "and made it certain. The best of n samples is still random: subtract (n - 1) / n.")
    if close(got, [math.log(n) - 1 for n in ns]):
        raise Incorrect("you subtracted 1 instead of (n - 1) / n: best-of-1 is the sampling policy itself, "
                        "so its KL must be 0, and yours is -1.")
    if close(got, [math.log2(n) - (n - 1) / n for n in ns]):
        raise Incorrect("the KL is in nats: use the natural logarithm (math.log), not log2.")
    if close(got, [(n - 1) / n - math.log(n) for n in ns]):
        raise Incorrect("the sign is flipped: a KL is never negative. It is log n minus (n - 1) / n.")
    if close(got, [math.log(n) - (n - 1) for n in ns]) or close(got, [math.log(n) - 1 / n for n in ns]):
        raise Incorrect("the second term is (n - 1) / n, which grows from 0 (n = 1) towards 1.")
    if abs(got[0]) > 1e-9:
        raise Incorrect(f"best-of-1 is the sampling policy itself, so its KL must be 0; yours is {got[0]:.4g}.")
    for n, g, w in zip(ns, got, want):
        expect_close(g, w, f"the KL of best-of-{n}", atol=1e-6)


q1 = Question(
    "Lab 10, question 1 (the KL of best-of-n)",
    _check_bon_kl,
    hints=[("Chapter 5 derives it (the KL of best-of-n): the best of n samples has the largest of n uniform "
            "quantiles, with density n u^(n-1)."),
           "KL = E[log n + (n - 1) log u] under that density, and E[log u] = -1/n.",
           "KL = log(n) - (n - 1) / n, in nats (natural logarithm)."],
    solution="""
import math

def bon_kl(n):
    return math.log(n) - (n - 1) / n
""",
    reference=_reference_bon_kl,
)


# ----------------------------------------------------------------------------- q2: the estimator

def _reference_expected_gold(proxy, gold, n):
    proxy, gold = torch.as_tensor(proxy, dtype=torch.float64), torch.as_tensor(gold, dtype=torch.float64)
    N = proxy.numel()
    order = torch.argsort(proxy, stable=True)
    weights = torch.tensor([math.comb(i - 1, n - 1) / math.comb(N, n) for i in range(1, N + 1)],
                           dtype=torch.float64)
    return float((weights * gold[order]).sum())


def _with_weights(proxy, gold, weights):
    order = torch.argsort(torch.as_tensor(proxy, dtype=torch.float64), stable=True)
    return float((torch.as_tensor(weights, dtype=torch.float64) * torch.as_tensor(gold, dtype=torch.float64)[order]).sum())


def _check_expected_gold(fn) -> None:
    g = torch.Generator().manual_seed(10)
    N, n = 12, 4
    proxy = torch.randn(N, generator=g, dtype=torch.float64)
    gold = 0.5 * proxy + torch.randn(N, generator=g, dtype=torch.float64)
    got = _as_number(fn(proxy.clone(), gold.clone(), n), "the expected gold score of best-of-n")
    want = _reference_expected_gold(proxy, gold, n)
    binom = [math.comb(i - 1, n - 1) / math.comb(N, n) for i in range(1, N + 1)]
    wrong = {
        "ranked by gold": (_reference_expected_gold(gold, gold, n),
                           ("you ranked the samples by their gold score. Best-of-n picks by the proxy (the "
                            "reward model); the gold score is only measured on what the proxy picked.")),
        "reversed": (_with_weights(proxy, gold, binom[::-1]),
                     ("your ranks run the wrong way: with rank 1 the lowest proxy score, the sample of rank i "
                      "wins when the other n - 1 drawn all rank below it, C(i-1, n-1) / C(N, n). Yours "
                      "keeps the proxy's least favourite.")),
        "with replacement": (_with_weights(proxy, gold, [(i / N) ** n - ((i - 1) / N) ** n for i in range(1, N + 1)]),
                             ("those are the weights for drawing n samples with replacement, (i/N)^n - "
                              "((i-1)/N)^n. Best-of-n draws n distinct samples out of the N: C(i-1, n-1) / C(N, n).")),
        "first n": (float(gold[:n][proxy[:n].argmax()]),
                    ("that is one draw: the best of the first n samples. The estimator averages over every "
                     "subset of n of the N samples, which uses all of them and has far less variance.")),
        "unnormalised": (_with_weights(proxy, gold, [math.comb(i - 1, n - 1) for i in range(1, N + 1)]),
                         "your weights do not sum to 1: divide C(i-1, n-1) by C(N, n), the number of subsets."),
        "proxy": (_reference_expected_gold(proxy, proxy, n),
                  "that is the expected proxy score of best-of-n; return the expected gold score of the pick."),
    }
    for value, message in wrong.values():
        if abs(got - value) < 1e-9 and abs(got - want) > 1e-9:
            raise Incorrect(message)
    expect_close(got, want, f"the expected gold score of best-of-{n} from {N} samples", atol=1e-6)
    expect_close(_as_number(fn(proxy.clone(), gold.clone(), 1), "a number"), float(gold.mean()),
                 "best-of-1 (it should be the mean gold score of all samples)", atol=1e-6)
    expect_close(_as_number(fn(proxy.clone(), gold.clone(), N), "a number"), float(gold[proxy.argmax()]),
                 f"best-of-{N} from {N} samples (it should be the gold score of the proxy's favourite)", atol=1e-6)


q2 = Question(
    "Lab 10, question 2 (the unbiased best-of-n estimator)",
    _check_expected_gold,
    hints=[("Sort the samples by proxy score, so that rank 1 is the lowest. For which subsets of n is the "
            "sample of rank i the proxy's favourite?"),
           ("Exactly those that contain it and n - 1 samples of lower rank: C(i-1, n-1) of the C(N, n) "
            "subsets. `math.comb` computes binomial coefficients (and gives 0 when i - 1 < n - 1)."),
           "expected gold = sum over ranks i of C(i-1, n-1) / C(N, n) * gold of the sample of rank i."],
    solution="""
import math
import torch

def expected_gold(proxy, gold, n):
    N = len(proxy)
    order = torch.argsort(proxy)                       # lowest proxy score first: rank 1
    weights = [math.comb(i - 1, n - 1) / math.comb(N, n) for i in range(1, N + 1)]
    return sum(w * gold[j].item() for w, j in zip(weights, order))
""",
    reference=_reference_expected_gold,
)


# ----------------------------------------------------------------------------- q3: fitting the forms

def _reference_fit(d, reward, form):
    d = torch.as_tensor(d, dtype=torch.float64)
    r = torch.as_tensor(reward, dtype=torch.float64)
    keep = d > 0
    d, r = d[keep], r[keep]
    second = -d * d if form == "bon" else -d * torch.log(d)
    X = torch.stack([d, second], 1)
    a, b = torch.linalg.lstsq(X, r[:, None]).solution.squeeze(1).tolist()
    return a, b


def _fit_with(d, r, first, second):
    X = torch.stack([first, second], 1)
    return tuple(torch.linalg.lstsq(X, r[:, None]).solution.squeeze(1).tolist())


def _check_fit(fn) -> None:
    d = torch.tensor([0.0, 0.3, 0.5, 0.8, 1.0, 1.3, 1.6, 2.0, 2.4], dtype=torch.float64)
    noise = torch.tensor([0.0, 0.02, -0.03, 0.04, -0.01, 0.03, -0.04, 0.02, -0.02], dtype=torch.float64)
    cases = {"bon": d * (0.9 - 0.3 * d) + noise,
             "rl": d * (0.7 - 0.5 * torch.log(d.clamp(min=1e-12))) + noise}
    for form, reward in cases.items():
        got = fn(d.tolist(), reward.tolist(), form)
        if isinstance(got, torch.Tensor):
            got = tuple(got.tolist())
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise Incorrect("return a pair (a, b).")
        got = tuple(float(g) for g in got)
        want = _reference_fit(d, reward, form)
        keep = d > 0
        dk, rk = d[keep], reward[keep]
        shape = -dk * dk if form == "bon" else -dk * torch.log(dk)
        form_text = "d (a - b d)" if form == "bon" else "d (a - b log d)"
        close = lambda u, v: all(abs(x - y) < 1e-6 for x, y in zip(u, v))
        if close(got, (want[0], -want[1])) and abs(want[1]) > 1e-6:
            raise Incorrect(f"b has the wrong sign: in {form_text}, b multiplies a term that is "
                            "subtracted, so its column in the design matrix is the negated one.")
        if close(got, want[::-1]):
            raise Incorrect("a and b are swapped: return (a, b) in that order.")
        if form == "rl" and close(got, (want[0], want[1] / 2)):
            raise Incorrect("you used log KL = 2 log d where the form has log d; the RL form is "
                            "d (a - b log d) with d = sqrt(KL).")
        if close(got, _fit_with(dk, rk / dk, torch.ones_like(dk), shape / dk)):
            raise Incorrect("you fitted reward / d as a line. That gives every point another weight (the "
                            "points near d = 0 count most) and is no longer least squares on the reward "
                            "itself: fit reward ~ a * d + b * (second column) directly.")
        expect_close(got, want, f"(a, b) for the {form} form {form_text} on noisy data", atol=1e-5)


q3 = Question(
    "Lab 10, question 3 (fitting a and b by least squares)",
    _check_fit,
    hints=[("Both forms are linear in (a, b): reward = a * d + b * g(d), with g(d) = -d^2 "
            "for best-of-n and -d log d for RL."),
           ("Stack the columns d and g(d) into a matrix X and solve the least-squares problem "
            "X @ [a, b] ~ reward, e.g. with torch.linalg.lstsq or numpy.linalg.lstsq. Points at d = 0 "
            "tell nothing (every form is 0 there), and log 0 is undefined: drop them.")],
    solution="""
import torch

def fit_form(d, reward, form):
    d = torch.tensor(d, dtype=torch.float64)
    r = torch.tensor(reward, dtype=torch.float64)
    d, r = d[d > 0], r[d > 0]
    second = -d * d if form == "bon" else -d * torch.log(d)
    X = torch.stack([d, second], 1)
    a, b = torch.linalg.lstsq(X, r[:, None]).solution.squeeze(1).tolist()
    return a, b
""",
    reference=_reference_fit,
)

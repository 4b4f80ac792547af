"""Over-optimisation of a proxy reward (Gao, Schulman and Hilton, 2022), in miniature.

A reward model is a proxy for what people want. Optimise it hard enough and the policy finds
what the proxy gets wrong: the proxy score keeps rising while the true (gold) score first rises,
then falls. Gao et al. measured both against the distance the policy moved from its start,
``d = sqrt(KL(pi || pi_init))``, and fitted (eq-gao-bon, eq-gao-rl)::

    best-of-n:  R(d) = d (alpha - beta d)
    RL:         R(d) = d (alpha - beta log d)

Ours: the proxy is a reward model trained on few comparisons; the gold reward is the gold judge,
standardised on the SFT model's samples so that both start near 0 and share units (one SFT
standard deviation). For best-of-n, ``KL = log n - (n - 1) / n``; for RL, the PPO log's KL to
the reference (nats per response, estimated on each batch's samples).
"""
from __future__ import annotations

import math

import torch

from .judge import GoldJudge


def bon_kl(n: int) -> float:
    """KL of the best-of-n distribution to the sampling policy (eq-bon-kl)."""
    return math.log(n) - (n - 1) / n


def expected_best_of_n(proxy: torch.Tensor, gold: torch.Tensor, n: int) -> tuple[float, float]:
    """Expected (proxy, gold) score of best-of-n, for one prompt, from ``N >= n`` samples.

    Drawing n of the N samples at random and keeping the proxy's favourite, the sample of proxy
    rank ``i`` (1 = lowest of N) is kept with probability ``C(i-1, n-1) / C(N, n)``; averaging over
    these probabilities uses every sample and has far less variance than one draw of n (the
    unbiased estimator of Gao et al., appendix). Proxy ties are broken by sample order.
    """
    N = proxy.numel()
    if not 1 <= n <= N:
        raise ValueError(f"best-of-{n} needs at least {n} samples, got {N}")
    order = torch.argsort(proxy, stable=True)
    ranks = torch.arange(1, N + 1, dtype=torch.float64)
    log_w = (torch.lgamma(ranks) - torch.lgamma(ranks - n + 1) - math.lgamma(n)) if n > 1 else torch.zeros(N, dtype=torch.float64)
    log_w = torch.where(ranks >= n, log_w, torch.full_like(log_w, -math.inf))
    w = torch.softmax(log_w, 0)  # normalising by C(N, n) exactly
    return (float((w * proxy[order].double()).sum()), float((w * gold[order].double()).sum()))


def best_of_n_sweep(proxy_scores: torch.Tensor, gold_scores: torch.Tensor, ns=(1, 2, 4, 8, 16, 32, 64, 128, 256)) -> dict:
    """The best-of-n curve over prompts: ``proxy_scores`` and ``gold_scores`` are ``[prompts, N]``.
    Returns n, KL, sqrt(KL) and the mean proxy and gold score of best-of-n for each n."""
    out = {"n": list(ns), "kl": [], "d": [], "proxy": [], "gold": []}
    for n in ns:
        pairs = [expected_best_of_n(p, g, n) for p, g in zip(proxy_scores, gold_scores)]
        out["kl"].append(bon_kl(n))
        out["d"].append(math.sqrt(bon_kl(n)))
        out["proxy"].append(sum(p for p, _ in pairs) / len(pairs))
        out["gold"].append(sum(g for _, g in pairs) / len(pairs))
    return out


def fit_gao(d, reward, form: str) -> dict:
    """Least-squares fit of Gao et al.'s functional form to ``reward`` against ``d = sqrt(KL)``.

    ``form`` is ``"bon"`` (``d (alpha - beta d)``) or ``"rl"`` (``d (alpha - beta log d)``). Both
    are linear in (alpha, beta), so the fit is one linear solve; points with ``d = 0`` carry no
    information (every form is 0 there) and are skipped. Returns alpha, beta, the ``d`` where the
    fitted gold peaks and the fitted values.
    """
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    d = torch.as_tensor(d, dtype=torch.float64)
    r = torch.as_tensor(reward, dtype=torch.float64)
    keep = d > 0
    if int(keep.sum()) < 2:
        raise ValueError("fitting needs at least two points with KL > 0")
    dk, rk = d[keep], r[keep]
    second = -dk * dk if form == "bon" else -dk * torch.log(dk)
    X = torch.stack([dk, second], 1)
    alpha, beta = torch.linalg.lstsq(X, rk[:, None]).solution.squeeze(1).tolist()
    fitted = d * (alpha - beta * (d if form == "bon" else torch.log(d.clamp(min=1e-12))))
    fitted = torch.where(d > 0, fitted, torch.zeros_like(fitted))
    if beta > 0:  # with alpha <= 0 the fitted gold never rises: the peak is at the start
        peak = max(alpha / (2 * beta), 0.0) if form == "bon" else math.exp(alpha / beta - 1)
    else:
        peak = math.inf  # no turn-over within the fitted form
    return {"alpha": alpha, "beta": beta, "peak_d": peak, "fitted": fitted.tolist()}


def gold_standardiser(world, tasks, responses: list[str]):
    """``(mean, std)`` of the gold score over the SFT model's samples, to put gold in SFT units."""
    scores = torch.tensor([v.score for v in GoldJudge(world).score_many(tasks, responses)], dtype=torch.float64)
    return scores.mean().item(), max(scores.std().item(), 1e-6)


def rl_curve(log: dict, gold_mean: float, gold_std: float, start_proxy: float | None = None,
             smooth: int = 3) -> dict:
    """From a PPO log: sqrt(KL), proxy and standardised gold per rollout batch, each relative to
    its value before training (the first batch is sampled from the SFT model itself), smoothed
    by a running mean over ``smooth`` batches (batches of 64 responses are noisy)."""
    def running(xs):
        return [sum(xs[max(0, i - smooth + 1):i + 1]) / len(xs[max(0, i - smooth + 1):i + 1]) for i in range(len(xs))]

    kl = [max(k, 0.0) for k in running(log["kl"])]
    proxy = running(log["rm_score"])
    gold = [(g - gold_mean) / gold_std for g in running(log["gold_score"])]
    p0 = proxy[0] if start_proxy is None else start_proxy
    return {"d": [math.sqrt(k) for k in kl], "kl": kl, "proxy": [p - p0 for p in proxy],
            "gold": [g - gold[0] for g in gold]}


# Per scale: comparisons behind the proxy (RM training prompts), prompts and samples for
# best-of-n, and the PPO runs (longer and faster than the default, to push past the peak).
STUDY = {
    "ci": {"proxy_prompts": 40, "bon_prompts": 16, "n_max": 32, "steps": 6, "lr": 1e-4},
    # cpu: the proxy is the course's reward model itself (None: every RM prompt) and PPO keeps the
    # default settings, so the beta > 0 run is the PPO stage of chapter 5. A proxy from 100 prompts
    # (185 pairs) is at chance (held-out accuracy 0.51): its gold curve falls from the first step.
    "cpu": {"proxy_prompts": None, "bon_prompts": 96, "n_max": 256, "steps": 40, "lr": 3e-5},
    "gpu": {"proxy_prompts": 300, "bon_prompts": 256, "n_max": 256, "steps": 120, "lr": 5e-5},
}


def overoptimization_study(scale: str | None = None, seed: int = 0, device=None, betas=(0.0, 0.1),
                           **settings) -> dict:
    """Proxy and gold reward against sqrt(KL) for best-of-n (n = 1 ... ``n_max``) and for PPO at
    each KL coefficient in ``betas``, all against one proxy reward model trained on
    ``proxy_prompts`` prompts' comparisons; with Gao et al.'s forms fitted to the gold curves.

    ``settings`` override the scale's entry of :data:`STUDY`. The reward model and PPO runs are
    cached stages; the best-of-n samples are drawn afresh (seeded).
    """
    from .evaluate import generate_responses
    from .ppo import ppo_policy
    from .reward import reward_model
    from .scale import current_scale
    from .sft import sft_model

    scale = current_scale(scale)
    s = {**STUDY[scale], **settings}
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    _, _, proxy, proxy_info = reward_model(scale, seed, device=device, max_prompts=s["proxy_prompts"])
    _, _, _, full_info = reward_model(scale, seed, device=device)
    tasks = [t for t in world.splits["eval"] if t.lang == "a"][:s["bon_prompts"]]
    n_max = s["n_max"]
    prompts = [t.prompt for t in tasks for _ in range(n_max)]
    responses = generate_responses(sft, tokenizer, prompts, 40, temperature=1.0, seed=seed + 400)
    judge = GoldJudge(world)
    gold_raw = torch.tensor([v.score for v in judge.score_many([t for t in tasks for _ in range(n_max)], responses)],
                            dtype=torch.float64)
    gold_mean, gold_std = gold_raw.mean().item(), max(gold_raw.std().item(), 1e-6)
    proxy_scores = proxy.score(prompts, responses).double().view(len(tasks), n_max)
    gold_scores = ((gold_raw - gold_mean) / gold_std).view(len(tasks), n_max)
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if n <= n_max]
    bon = best_of_n_sweep(proxy_scores, gold_scores, ns)
    bon["proxy"] = [p - bon["proxy"][0] for p in bon["proxy"]]
    bon["gold"] = [g - bon["gold"][0] for g in bon["gold"]]
    bon["fit"] = fit_gao(bon["d"], bon["gold"], "bon")
    rl = {}
    for beta in betas:
        _, _, _, info = ppo_policy(scale, seed, device=device, reward={"max_prompts": s["proxy_prompts"]},
                                   kl_coef=beta, steps=s["steps"], lr=s["lr"])
        curve = rl_curve(info["log"], gold_mean, gold_std)
        curve["fit"] = fit_gao(curve["d"], curve["gold"], "rl")
        curve["evaluation"] = {d: {m: {"gold_score": e["gold_score"], "kl": e.get("kl"),
                                       "win_rate_vs_sft": e["head_to_head_vs_sft"]["win_rate"]}
                                   for m, e in info["evaluation"][d].items()} for d in ("sampled", "greedy")}
        rl[beta] = curve
    return {"settings": s, "gold_mean": gold_mean, "gold_std": gold_std,
            "proxy_model": {k: proxy_info["evaluation"][k] for k in ("accuracy", "accuracy_vs_gold", "ceiling", "n_train_pairs")},
            "full_model": {k: full_info["evaluation"][k] for k in ("accuracy", "accuracy_vs_gold", "ceiling", "n_train_pairs")},
            "best_of_n": bon, "rl": rl}

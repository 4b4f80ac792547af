"""Chapter 7's studies: DPO against its formula, the best-of-n estimator against brute force,
Gao et al.'s fits on curves with known parameters, the hallucination and language probes."""
import itertools
import math
import random

import pytest
import torch

from rlhf_minimal.dpo import DPOConfig, dpo_loss, implicit_reward, response_logprobs, train_dpo
from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.overoptimization import (
    best_of_n_sweep,
    bon_kl,
    expected_best_of_n,
    fit_gao,
    rl_curve,
)
from rlhf_minimal.tokenizer import Tokenizer

WORDS = ["\n", "q", "good", "bad", "ok", "."]


def _tiny(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=2 + len(WORDS), n_layer=1, n_head=2, d_model=16, max_len=12))


# --------------------------------------------------------------------------- DPO
def _reference_dpo(pc, pr, rc, rr, beta):
    x = beta * ((pc - rc) - (pr - rr))
    return math.log1p(math.exp(-x)) if x > -30 else -x  # -log sigmoid(x), written out


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_matches_the_formula_including_huge_gaps(beta):
    rows = [(-3.0, -5.0, -4.0, -4.5), (-10.0, -1.0, -2.0, -2.0), (-1.0, -900.0, -1.0, -1.0),
            (-900.0, -1.0, -1.0, -1.0)]
    pc, pr, rc, rr = (torch.tensor(c) for c in zip(*rows))
    loss = dpo_loss(pc, pr, rc, rr, beta)
    expected = sum(_reference_dpo(*row, beta) for row in rows) / len(rows)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(implicit_reward(pc, rc, beta), beta * (pc - rc))
    weights = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert dpo_loss(pc, pr, rc, rr, beta, weights).item() == pytest.approx(_reference_dpo(*rows[0], beta), rel=1e-5)


def test_dpo_loss_is_log2_at_the_reference_and_its_gradient_favours_the_chosen():
    pc, pr = torch.tensor([-2.0], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    loss = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descending raises log pi(chosen), lowers rejected


def test_dpo_config_refuses_a_non_positive_beta():
    with pytest.raises(ValueError, match="beta must be positive"):
        DPOConfig(beta=0.0)


def test_response_logprobs_sums_the_response_tokens_and_eos_only():
    tok, model = Tokenizer(WORDS), _tiny()
    prompts, responses = ["q\n", "q q\n"], ["good .", "bad bad ."]
    got = response_logprobs(model, tok, prompts, responses, "cpu")
    for p, r, value in zip(prompts, responses, got.tolist()):
        ids = tok.encode(p) + tok.encode(r) + [tok.eos_id]
        with torch.no_grad():
            logp = model(torch.tensor([ids]))[0].log_softmax(-1)
        expected = sum(logp[t - 1, ids[t]].item() for t in range(len(tok.encode(p)), len(ids)))
        assert value == pytest.approx(expected, abs=1e-5)


def test_a_pair_longer_than_the_context_is_refused():
    tok, model = Tokenizer(WORDS), _tiny()
    with pytest.raises(Exception, match="longer than the context"):
        response_logprobs(model, tok, ["q\n"], [" ".join(["good"] * 20)], "cpu")


def _rows(n_prompts=4):
    return [{"prompt": "q\n" if i % 2 == 0 else "q q\n", "chosen": "good .", "rejected": "bad .", "prompt_id": i % 2}
            for i in range(n_prompts)][:2]


def test_dpo_learns_to_prefer_the_chosen_answer_and_is_reproducible():
    tok = Tokenizer(WORDS)
    rows = _rows()
    cfg = DPOConfig(beta=0.5, epochs=60, prompts_per_batch=2, lr=3e-3, warmup=2)
    sft = _tiny()
    policy, log = train_dpo(sft, tok, rows, cfg, seed=0, device="cpu")
    prompts = ["q\n", "q q\n"]
    gap_before = (response_logprobs(sft, tok, prompts, ["good ."] * 2) - response_logprobs(sft, tok, prompts, ["bad ."] * 2))
    gap_after = (response_logprobs(policy, tok, prompts, ["good ."] * 2) - response_logprobs(policy, tok, prompts, ["bad ."] * 2))
    assert torch.all(gap_after > gap_before + 2.0)
    assert log["loss"][0] == pytest.approx(math.log(2), abs=1e-3) and log["loss"][-1] < 0.2
    assert log["accuracy"][0] == 0.5  # policy = reference at the first step: every pair a tie, counted half
    assert log["accuracy"][-1] == 1.0
    _, log2 = train_dpo(_tiny(), tok, rows, cfg, seed=0, device="cpu")
    assert log2["loss"] == log["loss"]


def test_dpo_refuses_bad_comparison_rows():
    from rlhf_minimal.data import DataError

    tok = Tokenizer(WORDS)
    with pytest.raises(DataError, match="row 0"):
        train_dpo(_tiny(), tok, [{"prompt": "q\n", "chosen": "good .", "rejected": "good .", "prompt_id": 0}],
                  DPOConfig(), device="cpu")


# --------------------------------------------------------------------------- over-optimisation
def test_bon_kl_is_the_analytic_formula():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert bon_kl(256) == pytest.approx(math.log(256) - 255 / 256)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_expected_best_of_n_equals_the_average_over_every_subset(n):
    rng = random.Random(n)
    proxy = torch.tensor([rng.random() for _ in range(7)])
    gold = torch.tensor([rng.gauss(0, 1) for _ in range(7)])
    subsets = list(itertools.combinations(range(7), n))
    best = [max(s, key=lambda i: proxy[i].item()) for s in subsets]
    want_proxy = sum(proxy[i].item() for i in best) / len(subsets)
    want_gold = sum(gold[i].item() for i in best) / len(subsets)
    got_proxy, got_gold = expected_best_of_n(proxy, gold, n)
    assert got_proxy == pytest.approx(want_proxy, abs=1e-9) and got_gold == pytest.approx(want_gold, abs=1e-9)


def test_best_of_n_needs_enough_samples():
    with pytest.raises(ValueError, match="at least 8 samples"):
        expected_best_of_n(torch.zeros(4), torch.zeros(4), 8)


def test_best_of_n_sweep_proxy_never_falls_as_n_grows():
    gen = torch.Generator().manual_seed(0)
    proxy = torch.randn(10, 64, generator=gen)
    gold = proxy + torch.randn(10, 64, generator=gen)
    sweep = best_of_n_sweep(proxy, gold, ns=(1, 2, 4, 16, 64))
    assert sweep["proxy"] == sorted(sweep["proxy"])
    assert sweep["proxy"][0] == pytest.approx(proxy.mean().item(), abs=1e-6)
    assert sweep["proxy"][-1] == pytest.approx(proxy.max(-1).values.mean().item(), abs=1e-6)


@pytest.mark.parametrize("form,alpha,beta", [("bon", 1.2, 0.4), ("rl", 0.8, 0.3)])
def test_fit_gao_recovers_known_parameters(form, alpha, beta):
    d = torch.linspace(0.0, 3.0, 25)
    safe = d.clamp(min=1e-12)
    r = d * (alpha - beta * (d if form == "bon" else torch.log(safe)))
    fit = fit_gao(d.tolist(), r.tolist(), form)
    assert fit["alpha"] == pytest.approx(alpha, abs=1e-6) and fit["beta"] == pytest.approx(beta, abs=1e-6)
    peak = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    assert fit["peak_d"] == pytest.approx(peak, rel=1e-5)
    assert fit["fitted"][0] == 0.0


def test_fit_gao_puts_the_peak_at_the_start_when_gold_never_rises():
    d = [0.0, 0.5, 1.0, 1.5, 2.0]
    fit = fit_gao(d, [-0.1 * x - 0.2 * x * x for x in d], "bon")
    assert fit["alpha"] < 0 < fit["beta"] and fit["peak_d"] == 0.0


def test_fit_gao_refuses_unknown_forms_and_too_few_points():
    with pytest.raises(ValueError, match="form"):
        fit_gao([0.5, 1.0], [0.1, 0.2], "linear")
    with pytest.raises(ValueError, match="two points"):
        fit_gao([0.0, 1.0], [0.0, 0.2], "bon")


def test_rl_curve_starts_at_zero_and_standardises_gold():
    log = {"kl": [0.0, 1.0, 4.0], "rm_score": [0.5, 1.0, 2.0], "gold_score": [0.4, 0.5, 0.6]}
    curve = rl_curve(log, gold_mean=0.4, gold_std=0.5, smooth=1)
    assert curve["d"] == [0.0, 1.0, 2.0]
    assert curve["proxy"] == [0.0, 0.5, 1.5]
    assert curve["gold"] == pytest.approx([0.0, 0.2, 0.4])


# --------------------------------------------------------------------------- hallucination, language B
def test_unanswerable_outcomes_tell_declining_from_making_up(ci_world):
    from rlhf_minimal.hallucination import (
        classify_unanswerable,
        made_up_answer_text,
        unanswerable_outcomes,
    )

    task = next(t for t in ci_world.splits["eval"] if t.family == "unanswerable")
    made_up = made_up_answer_text(task, random.Random(0))
    assert task.spec["name"] in made_up.split()
    assert classify_unanswerable(ci_world, task, "i do not know .") == "declined"
    assert classify_unanswerable(ci_world, task, made_up) == "made up"
    assert classify_unanswerable(ci_world, task, "i can not help with that .") == "other"
    other = next(t for t in ci_world.splits["eval"] if t.family != "unanswerable")
    shares = unanswerable_outcomes(ci_world, [task, task, task, other], ["i do not know .", made_up, "good .", "x"])
    assert shares == {"declined": pytest.approx(1 / 3, abs=1e-4), "made up": pytest.approx(1 / 3, abs=1e-4),
                      "other": pytest.approx(1 / 3, abs=1e-4), "n": 3}


def test_decline_vs_made_up_reads_the_reward_models_preference(ci_world):
    from rlhf_minimal.hallucination import decline_vs_made_up

    class LikesDeclining:
        def score(self, prompts, responses):
            return torch.tensor([1.0 if r == "i do not know ." else -1.0 for r in responses])

    tasks = [t for t in ci_world.splits["eval"] if t.family == "unanswerable"]
    result = decline_vs_made_up(LikesDeclining(), tasks)
    assert result["decline_preferred"] == 1.0 and result["n"] == len(tasks)
    with pytest.raises(ValueError, match="no unanswerable"):
        decline_vs_made_up(LikesDeclining(), [t for t in tasks if False])


def test_language_b_tasks_translate_back_to_the_original(ci_world):
    from rlhf_minimal.generalization import answer_language, in_language_b

    tasks = [t for t in ci_world.splits["eval"] if t.lang == "a"][:20]
    b_tasks = in_language_b(ci_world, tasks)
    assert all(t.lang == "b" for t in b_tasks)
    assert sum(b.prompt != a.prompt for a, b in zip(tasks, b_tasks)) >= 15
    for a, b in zip(tasks, b_tasks):
        assert ci_world.translate_from_b(b.prompt.rstrip("\n")) + "\n" == a.prompt
        assert b.spec == a.spec and b.family == a.family
    sentence = "the bimo eats fish ."
    assert answer_language(ci_world, ci_world.translate_to_b(sentence)) in ("b", "none")
    assert answer_language(ci_world, "i do not know .") in ("a", "none")

"""PPO: the math against independent formulas, the masks, the EOS penalty, and a bandit it must
learn."""
import math

import pytest
import torch

from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.ppo import (
    AdaptiveKL,
    PolicyWithValue,
    PPOConfig,
    gae,
    per_token_rewards,
    policy_loss,
    response_mask,
    rollout,
    train_ppo,
    value_loss,
    whiten,
)
from rlhf_minimal.tokenizer import Tokenizer
from rlhf_minimal.world import Task


def _reference_gae(rewards, values, lengths, gamma, lam):
    """Plain reverse loop, one row at a time: A_t = sum_l (gamma lam)^l delta_{t+l}."""
    out = []
    for r, v, n in zip(rewards.tolist(), values.tolist(), lengths):
        deltas = [r[t] + gamma * (v[t + 1] if t + 1 < n else 0.0) - v[t] for t in range(n)]
        row = [sum((gamma * lam) ** l * deltas[t + l] for l in range(n - t)) for t in range(n)]
        out.append(row + [0.0] * (rewards.size(1) - n))
    return torch.tensor(out)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 1.0), (0.99, 0.0)])
def test_gae_matches_the_sum_of_discounted_deltas(gamma, lam):
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    lengths = [7, 1, 4, 6, 3]
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in lengths])
    # garbage beyond the mask must not leak in
    rewards = rewards * mask + (1 - mask) * 100.0
    advantages, returns = gae(rewards * mask, values, mask, gamma, lam)
    expected = _reference_gae(rewards * mask, values, lengths, gamma, lam)
    assert torch.allclose(advantages, expected, atol=1e-5)
    assert torch.allclose(returns, (expected + values) * mask, atol=1e-5)


def test_gae_with_lambda_one_is_the_return_minus_the_value():
    rewards = torch.tensor([[0.0, 0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.1, -0.3, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, 1.0, 1.0)
    assert torch.allclose(returns, torch.tensor([[2.0, 2.0, 2.0, 0.0]]))
    assert torch.allclose(advantages, torch.tensor([[1.5, 1.9, 2.3, 0.0]]))


def test_policy_loss_matches_the_clipped_surrogate_case_by_case():
    eps = 0.2
    # ratio 1.5 with A>0: clipped at 1.2; ratio 0.5 with A>0: unclipped (pessimistic);
    # ratio 0.5 with A<0: clipped at 0.8; ratio 1.5 with A<0: unclipped
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    old = torch.zeros(1, 4)
    loss = policy_loss(ratios.log(), old, adv, torch.ones(1, 4), eps)
    expected = (-1.2 - 0.5 + 0.8 + 1.5) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_policy_loss_ignores_tokens_outside_the_mask():
    g = torch.Generator().manual_seed(1)
    logp, old, adv = (torch.randn(3, 5, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    base = policy_loss(logp, old, adv, mask)
    adv2 = torch.where(mask.bool(), adv, torch.full_like(adv, 1e6))
    logp2 = torch.where(mask.bool(), logp, torch.full_like(logp, 30.0))
    assert policy_loss(logp2, old, adv2, mask).item() == pytest.approx(base.item())
    # by hand: masked mean of max(-A r, -A clip(r))
    r = (logp - old).exp()
    per = torch.maximum(-adv * r, -adv * r.clamp(0.8, 1.2))
    assert base.item() == pytest.approx((per * mask).sum().item() / mask.sum().item(), rel=1e-6)


def test_value_loss_takes_the_larger_of_clipped_and_unclipped():
    old = torch.tensor([[0.0, 0.0]])
    values = torch.tensor([[1.0, -0.1]])
    returns = torch.tensor([[0.0, 1.0]])
    # token 1: unclipped (1-0)^2=1, clipped (0.2-0)^2=0.04 -> 1; token 2: (-0.1-1)^2=1.21, clipped same
    loss = value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 1.21) / 2)


def test_kl_reward_is_zero_when_policy_equals_reference_and_score_lands_on_last_token():
    logp = torch.randn(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    rewards, kl = per_token_rewards(torch.tensor([2.0, -1.0]), logp, logp.clone(), mask, 0.3)
    assert torch.all(kl == 0)
    assert torch.equal(rewards, torch.tensor([[0, 0, 2.0, 0], [0, 0, 0, -1.0]]))
    rewards, kl = per_token_rewards(torch.zeros(2), logp, logp - 1.0, mask, 0.3)
    assert torch.allclose(rewards, -0.3 * mask.float())


def test_response_mask_keeps_tokens_up_to_the_first_eos():
    eos = 1
    response = torch.tensor([[5, 6, 1, 0, 0], [5, 1, 7, 1, 0], [5, 6, 7, 8, 9]])
    assert response_mask(response, eos).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_whiten_gives_mean_zero_std_one_on_the_mask():
    x = torch.tensor([[1.0, 2.0, 3.0, 50.0], [4.0, 5.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    w = whiten(x, mask)
    vals = w[mask.bool()]
    assert vals.mean().abs() < 1e-6 and (vals.pow(2).mean() - 1).abs() < 1e-4
    assert torch.all(w[~mask.bool()] == 0)


def test_adaptive_kl_moves_beta_towards_the_target():
    c = AdaptiveKL(0.1, target=4.0, horizon=1000)
    c.update(kl=8.0, n=100)          # error clipped at +0.2
    assert c.value == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    c2 = AdaptiveKL(0.1, target=4.0, horizon=1000)
    c2.update(kl=3.6, n=100)         # error -0.1
    assert c2.value == pytest.approx(0.1 * (1 - 0.1 * 0.1))


# --------------------------------------------------------------------------- a bandit
WORDS = ["\n", "q", "a", "b", "c", "d"]


class TokenReward:
    """Reward 1 for a response that is exactly 'a', 0 otherwise (a one-step bandit)."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append(list(responses))
        return torch.tensor([1.0 if r == "a" else 0.0 for r in responses])


def _tiny_policy(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=2 + len(WORDS), n_layer=1, n_head=2, d_model=16, max_len=8))


def test_eos_penalty_applies_when_and_only_when_eos_is_missing():
    tok = Tokenizer(WORDS)
    model = _tiny_policy()
    with torch.no_grad():  # uniform next-token distribution: some responses end, some do not
        model.head.weight.zero_()
    cfg = PPOConfig(steps=1, prompts_per_step=8, minibatch_size=8, max_new_tokens=3, no_eos_penalty=-7.0)
    policy = PolicyWithValue(model)
    tasks = [Task("chat", "q\n", {})] * 8
    batch = rollout(policy, model, TokenReward(), tok, tasks, cfg, 0.0, torch.Generator().manual_seed(0))
    for has_eos, score, rm_score in zip(batch.has_eos, batch.scores, batch.rm_scores):
        assert score.item() == (rm_score.item() if has_eos else -7.0)
    assert (~batch.has_eos).any() and batch.has_eos.any()
    # prompt and pad positions carry no reward, advantage or mask
    assert torch.all(batch.advantages[batch.mask == 0] == 0)


def test_ppo_learns_a_one_token_bandit_and_is_reproducible():
    tok = Tokenizer(WORDS)
    tasks = [Task("chat", "q\n", {})] * 8
    cfg = PPOConfig(steps=40, prompts_per_step=32, minibatch_size=16, max_new_tokens=2, lr=3e-3,
                    value_lr=3e-3, kl_coef=0.0, no_eos_penalty=0.0, ppo_epochs=2)
    sft = _tiny_policy()
    p_before = _prob_of_a(sft, tok)
    policy, log = train_ppo(sft, TokenReward(), tok, tasks, cfg, seed=0, device="cpu")
    assert p_before < 0.3 and _prob_of_a(policy.lm, tok) > 0.8
    assert sum(log["rm_score"][:5]) / 5 < 0.2 and sum(log["rm_score"][-5:]) / 5 > 0.8
    _, log2 = train_ppo(_tiny_policy(), TokenReward(), tok, tasks, cfg, seed=0, device="cpu")
    assert log2["rm_score"] == log["rm_score"] and log2["kl"] == log["kl"]


def _prob_of_a(model, tok):
    ids = torch.tensor([tok.encode("q\n")])
    with torch.no_grad():
        p = model(ids)[0, -1].softmax(-1)
    return p[tok.stoi["a"]].item()


def test_a_nan_loss_stops_training_with_a_message():
    from rlhf_minimal.train import TrainingDiverged

    class NaNReward:
        def score(self, prompts, responses):
            return torch.full((len(responses),), float("nan"))

    tok = Tokenizer(WORDS)
    cfg = PPOConfig(steps=2, prompts_per_step=8, minibatch_size=8, max_new_tokens=2, whiten_advantages=False)
    with pytest.raises(TrainingDiverged, match="PPO"):
        train_ppo(_tiny_policy(), NaNReward(), tok, [Task("chat", "q\n", {})], cfg, device="cpu")


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="value_model"):
        PPOConfig(value_model="twin")
    with pytest.raises(ValueError, match="multiple"):
        PPOConfig(prompts_per_step=10, minibatch_size=4)


def test_head_to_head_counts_ties_half():
    from types import SimpleNamespace as V

    from rlhf_minimal.evaluate import head_to_head
    a = [V(score=1.0), V(score=0.5), V(score=0.0), V(score=0.2)]
    b = [V(score=0.0), V(score=0.5), V(score=1.0), V(score=0.1)]
    res = head_to_head([None] * 4, a, b)
    assert (res["wins"], res["ties"], res["losses"]) == (2, 1, 1)
    assert res["win_rate"] == pytest.approx((2 + 0.5) / 4)


def test_best_of_n_keeps_the_reward_models_favourite_and_reports_its_kl():
    from rlhf_minimal.evaluate import best_of_n, sequence_kl

    class Longest:
        def score(self, prompts, responses):
            return torch.tensor([float(len(r.split())) for r in responses])

    tok = Tokenizer(WORDS)
    model = _tiny_policy(1)
    tasks = [Task("chat", "q\n", {})] * 3
    out = best_of_n(model, Longest(), tok, tasks, 4, max_new_tokens=4, seed=0)
    for chosen, candidates in zip(out["responses"], out["all_responses"]):
        assert len(chosen.split()) == max(len(c.split()) for c in candidates)
    assert out["kl"] == pytest.approx(math.log(4) - 3 / 4)
    # a policy compared with itself has zero KL on any response
    kls = sequence_kl(model, model, tok, tasks, out["responses"])
    assert all(abs(k) < 1e-6 for k in kls)


def test_best_of_n_curve_picks_the_best_of_the_first_n():
    from types import SimpleNamespace as V
    from rlhf_minimal.evaluate import best_of_n_curve

    class ByLength:
        def score_many(self, tasks, texts):
            return [V(score=float(len(t))) for t in texts]

    bon = {"all_rm_scores": [[0.0, 2.0, 1.0, 3.0]], "all_responses": [["a", "bbb", "cc", "dddd"]]}
    curve = best_of_n_curve(bon, [None], ByLength(), ns=(1, 2, 4))
    assert curve["rm_score"] == [0.0, 2.0, 3.0] and curve["gold_score"] == [1.0, 3.0, 4.0]
    assert curve["kl"] == pytest.approx([0.0, math.log(2) - 0.5, math.log(4) - 0.75])


def test_best_of_first_picks_among_the_first_n_samples_only():
    from rlhf_minimal.evaluate import best_of_first

    bon = {"all_rm_scores": [[0.0, 2.0, 5.0, 3.0], [4.0, 1.0, 9.0, 0.0]],
           "all_responses": [["a", "b", "c", "d"], ["e", "f", "g", "h"]]}
    two = best_of_first(bon, 2)  # the 5.0 and the 9.0 are third: out of reach for n = 2
    assert two["responses"] == ["b", "e"] and two["rm_scores"] == [2.0, 4.0]
    assert two["kl"] == pytest.approx(math.log(2) - 1 / 2)
    assert best_of_first(bon, 4)["responses"] == ["c", "g"]
    assert best_of_first(bon, 1)["kl"] == 0.0
    for bad in (0, 5):
        with pytest.raises(ValueError, match="between 1 and the 4 samples"):
            best_of_first(bon, bad)


def test_group_baseline_subtracts_the_mean_of_the_other_responses():
    from rlhf_minimal.ppo import group_baseline

    scores = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0])
    out = group_baseline(scores, 4)
    expected = [1 - 1 / 3, 0 - 2 / 3, 0.5 - 0.5, 0.5 - 0.5, 0, 0, 0, 0]
    assert out.tolist() == pytest.approx(expected)
    # the same response gets the same centred score whatever the prompt's level
    assert group_baseline(scores + 5.0, 4).tolist() == pytest.approx(expected)
    assert torch.equal(group_baseline(scores, 1), scores)
    with pytest.raises(ValueError, match="groups of 3"):
        group_baseline(scores, 3)
    with pytest.raises(ValueError, match="multiple of group_size"):
        PPOConfig(prompts_per_step=30, minibatch_size=10, group_size=4)


def test_likelihood_reward_prefers_what_the_model_finds_likely(digit_tokenizer):
    """The sharpening control's raw score is the mean log-probability per token (EOS included)."""
    from rlhf_minimal.evaluate import response_logprobs
    from rlhf_minimal.reward import LikelihoodReward

    torch.manual_seed(0)
    model = GPT(GPTConfig(8, 1, 2, 16, 16)).eval()
    prompts, responses = ["2 3", "4"], ["5 6", "7"]
    sums, lengths = response_logprobs(model, digit_tokenizer, prompts, responses)
    assert lengths == [3, 2]
    for prompt, response, total in zip(prompts, responses, sums):
        ids = torch.tensor([digit_tokenizer.encode(prompt) + digit_tokenizer.encode(response) + [1]])
        logp = torch.log_softmax(model(ids)[0, :-1], -1)
        n = len(digit_tokenizer.encode(prompt))
        by_hand = sum(logp[t - 1, ids[0, t]].item() for t in range(n, ids.size(1)))
        assert total == pytest.approx(by_hand, abs=1e-4)
    lik = LikelihoodReward(model, digit_tokenizer)
    assert lik.raw(prompts, responses).tolist() == pytest.approx([s / n for s, n in zip(sums, lengths)], abs=1e-5)

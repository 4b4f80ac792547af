"""Chapter 8's methods against independent formulas: GRPO's group advantage and k3 KL, RLOO's
leave-one-out baseline, the verifier on known right and wrong answers, the constitution's
labeler, rejection sampling's pick; and a ci-scale GRPO run whose verifier reward rises."""
import math
import random
import statistics

import pytest
import torch

from rlhf_minimal.grpo import (GRPOConfig, group_advantages, grpo_loss, k3_kl, reinforce_loss,
                               rloo_advantages)
from rlhf_minimal.ppo import policy_loss


def test_group_advantages_match_the_formula_group_by_group():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(24, generator=g)
    got = group_advantages(scores, 6, eps=1e-4)
    for start in range(0, 24, 6):
        group = scores[start:start + 6].tolist()
        mean, std = statistics.fmean(group), statistics.stdev(group)
        for i, s in enumerate(group):
            assert got[start + i].item() == pytest.approx((s - mean) / (std + 1e-4), abs=1e-5)
    # a tied group teaches nothing: advantage exactly 0, not NaN
    assert group_advantages(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]), 4).tolist()[:4] == [0.0] * 4
    # a 0/1 group with one success: that response's advantage is (1 - 1/4) / std
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, eps=0.0)
    assert adv[0].item() == pytest.approx(0.75 / statistics.stdev([1, 0, 0, 0]), rel=1e-5)
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def test_k3_is_an_unbiased_never_negative_estimate_of_the_kl():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(50, generator=g), 0)
    q = torch.softmax(torch.randn(50, generator=g), 0)
    exact = float((p * (p.log() - q.log())).sum())  # KL(p || q)
    per_token = k3_kl(p.log(), q.log())
    assert (per_token >= 0).all()
    assert float((p * per_token).sum()) == pytest.approx(exact, rel=1e-5)  # E_p[k3] = KL(p || q)
    assert float(k3_kl(torch.tensor([-1.3]), torch.tensor([-1.3]))) == 0.0


def test_grpo_loss_is_the_clipped_surrogate_plus_beta_k3():
    g = torch.Generator().manual_seed(2)
    lp, old, ref = (-torch.rand(4, 6, generator=g) * 2 for _ in range(3))
    adv = torch.randn(4, generator=g)[:, None].expand(4, 6)
    mask = torch.tensor([[1] * n + [0] * (6 - n) for n in (6, 2, 4, 1)], dtype=torch.float)
    loss, surrogate, kl = grpo_loss(lp, old, ref, adv, mask, 0.2, 0.04)
    terms = []
    for b in range(4):
        for t in range(int(mask[b].sum())):
            r = math.exp(lp[b, t] - old[b, t])
            a = adv[b, t].item()
            x = (ref[b, t] - lp[b, t]).item()
            terms.append((max(-a * r, -a * min(max(r, 0.8), 1.2)), math.exp(x) - x - 1))
    assert surrogate.item() == pytest.approx(sum(s for s, _ in terms) / len(terms), abs=1e-6)
    assert kl.item() == pytest.approx(sum(k for _, k in terms) / len(terms), abs=1e-6)
    assert loss.item() == pytest.approx(surrogate.item() + 0.04 * kl.item(), abs=1e-6)


def test_rloo_baseline_is_the_mean_of_the_other_rewards():
    g = torch.Generator().manual_seed(3)
    scores, kl = torch.randn(8, generator=g), torch.rand(8, 5, generator=g)
    got = rloo_advantages(scores, kl, 4, 0.1)
    rewards = [scores[i].item() - 0.1 * kl[i].sum().item() for i in range(8)]
    for i in range(8):
        group = range(i // 4 * 4, i // 4 * 4 + 4)
        others = [rewards[j] for j in group if j != i]
        assert got[i].item() == pytest.approx(rewards[i] - sum(others) / 3, abs=1e-5)
    # the baseline leaves the mean advantage of a group at 0 and the ordering of rewards intact
    assert got.view(2, 4).sum(-1).abs().max().item() < 1e-5


def test_reinforce_gradient_equals_the_clipped_loss_gradient_at_the_sampling_policy():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, 7, generator=g, requires_grad=True)
    tokens = torch.randint(0, 7, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float)
    adv = torch.tensor([0.5, -1.0, 2.0])
    lp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    (g1,) = torch.autograd.grad(reinforce_loss(lp, adv, mask), logits, retain_graph=True)
    (g2,) = torch.autograd.grad(policy_loss(lp, lp.detach(), adv[:, None].expand(3, 5), mask, 0.2), logits)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_config_refuses_groups_of_one_and_shares_the_ppo_budget():
    from rlhf_minimal.ppo import PPOConfig

    with pytest.raises(ValueError, match="at least 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="algorithm"):
        GRPOConfig(algorithm="ppo")
    for scale in ("ci", "cpu", "gpu"):
        grpo, ppo = GRPOConfig.preset(scale), PPOConfig.preset(scale)
        assert grpo.steps * grpo.prompts_per_step == ppo.steps * ppo.prompts_per_step
        assert GRPOConfig.preset(scale, "rloo").kl_coef == ppo.kl_coef


# ----------------------------------------------------------------------------- the verifier
@pytest.fixture(scope="module")
def ci_world():
    from rlhf_minimal.world import make_world

    return make_world(0, "ci")


def test_verifier_on_known_right_and_wrong_answers(ci_world):
    from rlhf_minimal.verifier import Unverifiable, Verifier, verifiable
    from rlhf_minimal.world import FILLERS, _wrong_response, ideal_response

    verifier, rng = Verifier(ci_world), random.Random(0)
    checked = set()
    for task in ci_world.splits["eval"]:
        if not verifiable(task):
            with pytest.raises(Unverifiable, match="no answer key"):
                verifier.check(task, ideal_response(ci_world, task))
            continue
        checked.add(task.family)
        assert verifier.check(task, ideal_response(ci_world, task)) == 1.0, task
        assert verifier.check(task, _wrong_response(ci_world, task, rng)) == 0.0, task
        assert verifier.check(task, f"{ideal_response(ci_world, task)} {FILLERS[2]}") == 0.0, task
    assert checked == {"open_qa", "chat", "closed_qa", "classify", "extract", "rewrite", "summarize", "generation"}
    tasks = [t for t in ci_world.splits["eval"] if verifiable(t)][:5]
    scores = verifier.score([t.prompt for t in tasks], [ideal_response(ci_world, t) for t in tasks])
    assert scores.tolist() == [1.0] * 5


def test_verifier_split_counts_what_it_leaves_out(ci_world):
    from rlhf_minimal.verifier import Verifier, kind_of

    tasks = list(ci_world.splits["rl"])
    kept, left_out = Verifier.split(tasks)
    assert len(kept) + sum(left_out.values()) == len(tasks)
    assert set(left_out) == {"generation (story)", "refuse", "unanswerable"}
    assert left_out["refuse"] == sum(t.family == "refuse" for t in tasks)
    assert all(kind_of(t) not in left_out for t in kept)


# ----------------------------------------------------------------------------- RLAIF, rejection sampling
def test_constitution_reads_harm_filler_and_repetition():
    from rlhf_minimal.rlaif import violations

    harm = "tell me how to trap the bimo .\n"
    assert violations(harm, "i can not help with that .") == []
    assert len(violations(harm, "put a net near the bimo . it will trap the bimo .")) == 1
    assert violations("what color is the bimo ?\n", "i can not help with that .") == ["Do not refuse a harmless request."]
    assert len(violations("what color is the bimo ?\n", "the bimo is red . i hope this helps .")) == 1
    assert len(violations("what color is the bimo ?\n", "the bimo is red . the bimo is red .")) == 1
    assert violations("what color is the bimo ?\n", "the bimo is red .") == []


def test_ai_labeler_prefers_fewer_violations_then_likelihood():
    from rlhf_minimal.rlaif import AILabeler

    class Likelihood:  # a stand-in: longer responses are "more likely"
        def score(self, prompts, responses):
            return torch.tensor([float(len(r)) for r in responses])

    rows = [{"prompt": "what color is the bimo ?\n", "chosen": "the bimo is red . i hope this helps .",
             "rejected": "the bimo is red .", "prompt_id": 0, "task": "{}"},
            {"prompt": "what color is the bimo ?\n", "chosen": "the bimo is blue .",
             "rejected": "the bimo is red .", "prompt_id": 0, "task": "{}"}]
    out, counts = AILabeler(Likelihood()).relabel(rows)
    pairs = {(r["chosen"], r["rejected"]) for r in out}
    assert ("the bimo is red .", "the bimo is red . i hope this helps .") in pairs
    assert ("the bimo is blue .", "the bimo is red .") in pairs  # a tie on principles: the likelier
    assert counts["n_pairs"] == 3 and counts["by_principles"] == 2 and counts["by_likelihood"] == 1


def test_rejection_sampling_keeps_the_reward_models_favourite(ci_world):
    from rlhf_minimal.rejection import best_responses

    class LengthRM:
        def score(self, prompts, responses):
            return torch.tensor([float(len(r)) for r in responses])

    tasks = list(ci_world.splits["rl"])[:3]
    samples = [["a .", "a a a .", "a a ."], ["b b .", "b .", "b b b b ."], ["c .", "c c .", "c c c ."]]
    rows, kept = best_responses(tasks, samples, LengthRM())
    assert [r["completion"] for r in rows] == ["a a a .", "b b b b .", "c c c ."]
    assert kept == [7.0, 9.0, 7.0] and [r["prompt"] for r in rows] == [t.prompt for t in tasks]


# ----------------------------------------------------------------------------- a short run
def test_ci_grpo_against_the_verifier_raises_its_reward():
    """GRPO at the ci scale against the verifier, on the review labels (``classify``: the one
    verifiable family the tiny ci SFT model gets right at all, about 13% of samples): the verifier's
    mean reward on the sampled responses rises from the first batches to the last, and the policy
    moves away from SFT."""
    from rlhf_minimal.grpo import train_grpo
    from rlhf_minimal.sft import sft_model
    from rlhf_minimal.verifier import Verifier

    world, tokenizer, sft, _ = sft_model("ci", 0)
    verifier = Verifier(world)
    tasks = [t for t in verifier.split(list(world.splits["rl"]))[0] if t.family == "classify"]
    cfg = GRPOConfig(steps=12, prompts_per_step=32, group_size=4, max_new_tokens=16, lr=3e-4,
                     no_eos_penalty=0.0)
    _, log = train_grpo(sft, verifier, tokenizer, tasks, cfg, seed=0)
    first, last = sum(log["score"][:4]) / 4, sum(log["score"][-4:]) / 4
    assert last > first + 0.1, log["score"]
    assert log["kl"][-1] > 0.05 and all(math.isfinite(x) for x in log["kl"])


def test_grpo_and_rloo_updates_fit_on_one_screen_with_backward_and_step_in_them():
    import inspect

    from rlhf_minimal.grpo import grpo_update, rloo_update

    for update, loss in ((grpo_update, "grpo_loss("), (rloo_update, "reinforce_loss(")):
        source = inspect.getsource(update)
        assert len(source.splitlines()) <= 40, update.__name__
        for piece in (loss, "zero_grad", "backward()", "clip_grad_norm_(", "optimizer.step()", "for start in range("):
            assert piece in source, (update.__name__, piece)

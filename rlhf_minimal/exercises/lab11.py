"""Lab 11 exercises: the DPO loss from sequence log-probabilities, and the implicit reward."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Incorrect, Question, expect_close

# ----------------------------------------------------------------------------- q1: the DPO loss

def _reference_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(chosen - rejected).mean()


def _check_dpo_loss(fn) -> None:
    g = torch.Generator().manual_seed(11)
    # sequence log-probabilities of 8 pairs: sums over a response's tokens, so tens of nats
    pc, pr = -20 * torch.rand(8, generator=g) - 5, -20 * torch.rand(8, generator=g) - 5
    rc, rr = pc + torch.randn(8, generator=g), pr + torch.randn(8, generator=g)
    beta = 0.5
    args = tuple(t.clone() for t in (pc, pr, rc, rr))
    got = fn(*args, beta)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise Incorrect("return the mean loss over the pairs as a 0-dim tensor.")
    if any(not torch.equal(a, b) for a, b in zip(args, (pc, pr, rc, rr))):
        raise Incorrect("your function changed its inputs in place; compute new tensors instead.")
    want = _reference_dpo_loss(pc, pr, rc, rr, beta)
    wrong = [
        (_reference_dpo_loss(pr, pc, rr, rc, beta),
         ("chosen and rejected are swapped: the loss must be small when the chosen response gained more "
          "log-probability over the reference than the rejected one, so use (chosen - rejected) inside the sigmoid.")),
        (-F.logsigmoid(beta * (pc - pr)).mean(),
         ("you forgot the reference: the implicit reward is beta * (log pi - log pi_ref), so subtract the "
          "reference's log-probabilities. Without them the loss rewards whatever the SFT model already "
          "preferred, and nothing holds the policy near it.")),
        (_reference_dpo_loss(pc, pr, rc, rr, 1.0),
         "beta is missing: the sigmoid takes beta * (log-ratio chosen - log-ratio rejected)."),
        (_reference_dpo_loss(pc, pr, rc, rr, 1 / beta),
         "you divided by beta; the implicit reward is beta times the log-ratio, so multiply."),
        (-F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum(),
         "you summed over the pairs; return the mean, so the loss does not grow with the batch."),
        (-F.logsigmoid(beta * ((pc + rc) - (pr + rr))).mean(),
         "the reference log-probabilities are subtracted from the policy's, not added."),
    ]
    for value, message in wrong:
        if abs(got.item() - value.item()) < 1e-6 and abs(got.item() - want.item()) > 1e-6:
            raise Incorrect(message)
    expect_close(got, want, "the DPO loss on 8 random pairs (beta = 0.5)")
    zero = fn(pc.clone(), pr.clone(), pc.clone(), pr.clone(), 0.1)
    expect_close(zero, torch.log(torch.tensor(2.0)), "the loss when the policy equals the reference (log 2)")
    # a policy confidently wrong: the rejected answer gained 1000 nats more than the chosen one
    far = fn(torch.tensor([-1000.0, -10.0]), torch.tensor([0.0, -10.0]), torch.tensor([0.0, -10.0]),
             torch.tensor([0.0, -10.0]), 0.5)
    if not torch.isfinite(far):
        raise Incorrect("the loss is infinite when the policy is confidently wrong (beta times the gap is "
                        "-500): log(sigmoid(x)) underflows to log 0. Use F.logsigmoid.")
    expect_close(far, (500.0 + 0.6931471805599453) / 2, "the loss with a gap of -500")


q1 = Question(
    "Lab 11, question 1 (the DPO loss)",
    _check_dpo_loss,
    hints=[("eq-dpo-loss: -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]), "
            "averaged over the pairs."),
           "`F.logsigmoid` computes log(sigmoid(x)) without underflow (import torch.nn.functional as F)."],
    solution="""
import torch.nn.functional as F

def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    chosen = beta * (policy_chosen - ref_chosen)        # implicit reward of y_w
    rejected = beta * (policy_rejected - ref_rejected)  # implicit reward of y_l
    return -F.logsigmoid(chosen - rejected).mean()
""",
    reference=_reference_dpo_loss,
)


# ----------------------------------------------------------------------------- q2: the implicit reward

def _reference_implicit_reward(policy_logprobs, ref_logprobs, beta):
    return beta * (policy_logprobs - ref_logprobs)


def _check_implicit_reward(fn) -> None:
    g = torch.Generator().manual_seed(12)
    policy = -30 * torch.rand(6, generator=g) - 2
    ref = policy + 2 * torch.randn(6, generator=g)
    beta = 0.2
    got = fn(policy.clone(), ref.clone(), beta)
    if not isinstance(got, torch.Tensor) or got.shape != policy.shape:
        raise Incorrect("return one implicit reward per response: a tensor of the same shape as the "
                        "log-probabilities.")
    want = _reference_implicit_reward(policy, ref, beta)
    wrong = [
        (beta * policy, ("you forgot the reference: beta * log pi alone rewards short, common responses, "
                         "whatever the preferences say. The implicit reward is beta * (log pi - log pi_ref).")),
        (policy - ref, "beta is missing: the implicit reward is beta times the log-ratio."),
        (beta * (ref - policy), ("the sign is flipped: a response the policy now likes more than the "
                                 "reference did has a positive implicit reward, beta * (log pi - log pi_ref).")),
        ((policy - ref) / beta, "you divided by beta; the implicit reward is beta times the log-ratio."),
        (beta * (policy / ref), ("a ratio of log-probabilities is not a log-ratio: log(pi / pi_ref) = "
                                 "log pi - log pi_ref.")),
    ]
    for value, message in wrong:
        if torch.allclose(got.double(), value.double(), atol=1e-6) and not torch.allclose(value, want):
            raise Incorrect(message)
    expect_close(got, want, "the implicit rewards (beta = 0.2)")
    expect_close(fn(policy.clone(), policy.clone(), 0.1), torch.zeros(6),
                 "the implicit reward of the reference itself (it should be 0)")


q2 = Question(
    "Lab 11, question 2 (the implicit reward)",
    _check_implicit_reward,
    hints=["Solve the closed-form optimum pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x) for r.",
           ("r(x, y) = beta log(pi(y|x) / pi_ref(y|x)) + beta log Z(x); the last term is the same for every "
            "response to a prompt, so DPO drops it: implicit reward = beta * (log pi - log pi_ref).")],
    solution="""
def implicit_reward(policy_logprobs, ref_logprobs, beta):
    return beta * (policy_logprobs - ref_logprobs)
""",
    reference=_reference_implicit_reward,
)

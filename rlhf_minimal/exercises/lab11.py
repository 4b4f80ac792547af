"""Lab 11 exercises: the DPO loss from sequence log-probabilities, the implicit reward, and the
training loop over the comparisons. Questions 1 and 3 are pieces of the lab's own DPO run
(:class:`rlhf_minimal.dpo.DPOPieces`)."""
from __future__ import annotations

import copy
import inspect

import torch
import torch.nn.functional as F

from ..dpo import dpo_loop, dpo_loss
from . import Incorrect, Question, expect_close

# ----------------------------------------------------------------------------- q1: the DPO loss

def _reference_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, weights=None):
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(chosen - rejected)
    return losses.mean() if weights is None else (weights * losses).sum() / weights.sum()


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
    weights = torch.rand(8, generator=g) + 0.1
    try:
        weighted = fn(pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta, weights=weights)
    except TypeError as err:
        raise Incorrect(f"your function does not take weights= ({err}): add the argument "
                        "`weights=None` and, when it is given, return sum(w * loss) / sum(w).") from None
    expect_close(weighted, _reference_dpo_loss(pc, pr, rc, rr, beta, weights),
                 "the weighted loss, sum(w * loss) / sum(w)")


q1 = Question(
    "Lab 11, question 1 (the DPO loss)",
    _check_dpo_loss,
    hints=[("eq-dpo-loss: -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]), "
            "averaged over the pairs; with weights, sum(w * loss) / sum(w)."),
           "`F.logsigmoid` computes log(sigmoid(x)) without underflow (import torch.nn.functional as F)."],
    solution="""
import torch.nn.functional as F

def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, weights=None):
    chosen = beta * (policy_chosen - ref_chosen)        # implicit reward of y_w
    rejected = beta * (policy_rejected - ref_rejected)  # implicit reward of y_l
    losses = -F.logsigmoid(chosen - rejected)
    if weights is None:
        return losses.mean()
    return (weights * losses).sum() / weights.sum()
""",
    reference=_reference_dpo_loss,
    piece=dpo_loss, piece_name="dpo_loss (rlhf_minimal.dpo)",
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


# ----------------------------------------------------------------------------- q3: the training loop

_WORDS = ["\n", "q", "good", "bad", "ok", "."]


def _tiny_run():
    """A one-block policy, its frozen copy's log-probabilities, three batches of comparisons (two
    prompts, one with three pairs and one with one), and a configuration."""
    from ..dpo import DPOConfig, dpo_batch, response_logprobs
    from ..model import GPT, GPTConfig
    from ..preference import group_by_prompt
    from ..tokenizer import Tokenizer

    tokenizer = Tokenizer(_WORDS)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        policy = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, d_model=16, max_len=12))
    rows = [{"prompt": "q\n", "chosen": c, "rejected": r, "prompt_id": 0}
            for c, r in (("good .", "bad ."), ("good .", "ok ."), ("ok .", "bad ."))]
    rows.append({"prompt": "q q\n", "chosen": "ok .", "rejected": "bad bad .", "prompt_id": 1})
    groups = group_by_prompt(rows)
    with torch.no_grad():
        for g in groups:
            g["ref"] = response_logprobs(policy, tokenizer, [g["prompt"]] * len(g["responses"]), g["responses"])
    batches = [dpo_batch(groups[:1], "cpu"), dpo_batch(groups[1:], "cpu"), dpo_batch(groups, "cpu")]
    return policy, tokenizer, batches, DPOConfig(beta=0.5, lr=3e-2, warmup=1)


def _run_loop(loop, policy, tokenizer, batches, cfg, loss=dpo_loss):
    """``loop`` from a copy of ``policy``: its parameters and the (step, loss) pairs it recorded."""
    from ..dpo import DPOPieces
    from ..train import Precision

    policy = copy.deepcopy(policy).train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)  # the loop must set cfg.lr's schedule
    recorded = []
    loop(policy, optimizer, tokenizer, batches, cfg, DPOPieces(dpo_loss=loss), Precision("cpu"),
         lambda step, loss, logprobs, b: recorded.append((step, round(float(loss.detach()), 5))))
    return torch.cat([p.detach().flatten() for p in policy.parameters()]), recorded


def _check_dpo_loop(fn) -> None:
    policy, tokenizer, batches, cfg = _tiny_run()
    start = torch.cat([p.detach().flatten() for p in policy.parameters()])
    want, want_log = _run_loop(dpo_loop, policy, tokenizer, batches, cfg)
    got, got_log = _run_loop(fn, policy, tokenizer, batches, cfg)
    if not got_log:
        raise Incorrect("record was never called: call record(step, loss, logprobs, b) once per batch, "
                        "before backward (it logs the step and stops the run on a NaN loss).")
    if [s for s, _ in got_log] != [s for s, _ in want_log]:
        raise Incorrect(f"record saw the steps {[s for s, _ in got_log]}, expected {[s for s, _ in want_log]}: "
                        "one call per batch, numbered from 0.")
    if torch.equal(got, start):
        raise Incorrect("the parameters did not move: after the loss, zero the gradients, "
                        "precision.backward(loss), clip, then precision.step(optimizer).")
    if torch.allclose(got, want, atol=1e-5):
        if got_log != want_log:
            raise Incorrect(f"the parameters are right, but the losses you recorded {got_log} are not "
                            f"those of each batch {want_log}: record the loss of the step.")
        return
    unweighted = _run_loop(dpo_loop, policy, tokenizer, batches, cfg,
                           lambda pc, pr, rc, rr, beta, weights=None: dpo_loss(pc, pr, rc, rr, beta))[0]
    if torch.allclose(got, unweighted, atol=1e-5):
        raise Incorrect("you left out b.weights, so the prompt with three pairs counts three times "
                        "as much as the one with one: pass weights=b.weights to the loss.")
    raise Incorrect(f"after three steps your parameters differ from the package's loop by up to "
                    f"{(got - want).abs().max().item():.3g}. Check: set_lr to cosine_lr(step, len(batches), "
                    "cfg.lr, cfg.warmup) at each step; the log-probabilities of b.responses; the loss on "
                    "each pair's positions b.chosen and b.rejected; zero_grad before backward.")


q3 = Question(
    "Lab 11, question 3 (the training loop)",
    _check_dpo_loop,
    hints=[("Each batch b: logprobs = response_logprobs(policy, tokenizer, b.prompts, b.responses); the loss "
            "pieces.dpo_loss(logprobs[b.chosen], logprobs[b.rejected], b.ref_logprobs[b.chosen], "
            "b.ref_logprobs[b.rejected], cfg.beta, b.weights)."),
           ("Then record(step, loss, logprobs, b), optimizer.zero_grad(set_to_none=True), "
            "precision.backward(loss), precision.clip_grad_norm(policy, optimizer, 1.0), "
            "precision.step(optimizer).")],
    solution=inspect.getsource(dpo_loop).replace("def dpo_loop(", "def training_loop(", 1),
    reference=dpo_loop,
    piece=dpo_loop, piece_name="dpo_loop (rlhf_minimal.dpo)",
)

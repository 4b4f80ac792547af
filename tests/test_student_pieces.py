"""The students' own pieces train the models of labs 4, 5 and 11 (RewardPieces, PPOPieces,
DPOPieces): passed the reference pieces, each trainer gives exactly the numbers of its default
path; a planted wrong piece gives a run that is visibly broken in its own log; and a run with other
pieces gets its own cache entry, never the package's."""
import math
import random
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from rlhf_minimal.cache import cached, entry_key
from rlhf_minimal.pieces import pieces_key
from rlhf_minimal.dpo import DPO_PIECES, DPOConfig, DPOPieces, dpo_loop, dpo_loss, train_dpo
from rlhf_minimal.exercises import lab04, lab05, lab11
from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.ppo import (PPO_PIECES, PPOConfig, PPOPieces, gae, per_token_rewards, policy_loss,
                              train_ppo)
from rlhf_minimal.preference import label, make_labelers
from rlhf_minimal.reward import (REWARD_PIECES, RewardModel, RewardPieces, pairwise_loss,
                                 reward_at_last_token, train_reward_model)
from rlhf_minimal.tokenizer import Tokenizer
from rlhf_minimal.world import Task, _wrong_response, ideal_response


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the reward model (lab 4)
def _reward_data(world, tokenizer):
    def rows_for(tasks, seed):
        rng = random.Random(seed)
        responses = [[ideal_response(world, t), _wrong_response(world, t, rng), "hello !"] for t in tasks]
        return label(tasks, responses, make_labelers(world, 2, temperature=0.05), seed)

    tasks = [t for t in world.splits["rm"] if t.family in ("open_qa", "classify")]
    torch.manual_seed(0)
    init = GPT(GPTConfig(tokenizer.vocab_size, 1, 2, 32, 96))
    return init, rows_for(tasks[:16], 0), rows_for(tasks[16:24], 1)


def _train_rm(world, tokenizer, pieces=REWARD_PIECES, epochs=3):
    from rlhf_minimal.reward import RewardConfig

    init, rows, val_rows = _reward_data(world, tokenizer)
    cfg = RewardConfig(prompts_per_batch=2, epochs=epochs, patience=epochs, lr=3e-3, warmup=2)
    model, log = train_reward_model(init, tokenizer, rows, cfg, seed=0, device="cpu", val_rows=val_rows,
                                    pieces=pieces)
    return model, log, rows


def test_reward_model_with_the_reference_pieces_gives_the_default_numbers(ci_world, tokenizer):
    model, log, _ = _train_rm(ci_world, tokenizer)
    explicit = RewardPieces(pairwise_loss=pairwise_loss, reward_at_last_token=reward_at_last_token)
    # the notebook's worked solutions: other code, the same arithmetic
    solutions = RewardPieces(pairwise_loss=lab04.q1.reference, reward_at_last_token=lab04.q3.reference)
    for pieces in (explicit, solutions):
        other, other_log, _ = _train_rm(ci_world, tokenizer, pieces)
        assert other_log["loss"] == log["loss"] and other_log["epoch_val_loss"] == log["epoch_val_loss"]
        assert _same_weights(_state(other), _state(model))
    assert log["epoch_val_loss"][-1] < math.log(2) - 0.05  # the healthy run learns


def test_reward_model_with_chosen_and_rejected_swapped_ranks_the_pairs_backwards(ci_world, tokenizer):
    swapped = RewardPieces(pairwise_loss=lambda c, r, weights=None: lab04.q1.reference(r, c, weights))
    model, log, rows = _train_rm(ci_world, tokenizer, swapped)
    # its own loss falls, as the package's does ...
    assert sum(log["loss"][-3:]) / 3 < sum(log["loss"][:3]) / 3 - 0.1
    # ... but the validation loss (always the package's eq-rm-loss) climbs above log 2, chance
    assert log["epoch_val_loss"][0] > math.log(2) and log["epoch_val_loss"][-1] > log["epoch_val_loss"][0]
    rm = RewardModel(model, tokenizer)
    chosen = rm.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = rm.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    assert (chosen > rejected).float().mean().item() < 0.2


# --------------------------------------------------------------------------- PPO (lab 5)
WORDS = ["\n", "q", "a", "b", "c", "d"]


class TokenReward:
    """Reward 1 for a response that is exactly 'a', 0 otherwise (a one-step bandit)."""

    def score(self, prompts, responses):
        return torch.tensor([1.0 if r == "a" else 0.0 for r in responses])


def _tiny_policy(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=2 + len(WORDS), n_layer=1, n_head=2, d_model=16, max_len=8))


def _train_bandit(pieces=PPO_PIECES, **changes):
    cfg = PPOConfig(**{**dict(steps=16, prompts_per_step=32, minibatch_size=16, max_new_tokens=2, lr=3e-3,
                              value_lr=3e-3, kl_coef=0.05, no_eos_penalty=0.0, ppo_epochs=2), **changes})
    tasks = [Task("chat", "q\n", {})] * 8
    return train_ppo(_tiny_policy(), TokenReward(), Tokenizer(WORDS), tasks, cfg, seed=0, device="cpu",
                     pieces=pieces)


def test_ppo_with_the_reference_pieces_gives_the_default_numbers():
    policy, log = _train_bandit()
    # the package's functions passed explicitly, and the minibatch step written out as the lab's
    # worked solution (the path a student's step takes)
    pieces = PPOPieces(per_token_rewards=per_token_rewards, gae=gae, policy_loss=policy_loss,
                       minibatch_step=lab05.q4.reference)
    other, other_log = _train_bandit(pieces)
    for key in ("rm_score", "kl", "entropy", "clip_fraction", "approx_kl", "policy_loss", "value_loss"):
        assert other_log[key] == log[key], key
    assert _same_weights(_state(other), _state(policy))
    assert sum(log["rm_score"][-4:]) / 4 > sum(log["rm_score"][:4]) / 4 + 0.2  # the healthy run learns


def test_ppo_with_the_policy_loss_sign_flipped_drives_the_reward_down():
    _, healthy = _train_bandit()
    flipped = PPOPieces(policy_loss=lambda *args: -lab05.q2.reference(*args))
    _, log = _train_bandit(flipped)
    early, late = sum(log["rm_score"][:4]) / 4, sum(log["rm_score"][-4:]) / 4
    assert late < early / 2 and late < sum(healthy["rm_score"][-4:]) / 4 - 0.3


def test_ppo_with_the_kl_reward_sign_flipped_runs_away_from_the_reference():
    def paid_to_leave(scores, logprobs, ref_logprobs, mask, beta):  # r_t = +beta (log pi - log pi_ref)
        return lab05.q3.reference(scores, logprobs, ref_logprobs, mask, -beta)

    # a reward that pays nothing: only the KL term acts
    _, healthy = _train_bandit(kl_coef=1.0, no_eos_penalty=0.0)
    _, log = _train_bandit(PPOPieces(per_token_rewards=paid_to_leave), kl_coef=1.0)
    assert log["kl"][-1] > 1.0 and log["kl"][-1] > 10 * max(abs(healthy["kl"][-1]), 0.05)


# --------------------------------------------------------------------------- DPO (lab 11)
DPO_WORDS = ["\n", "q", "good", "bad", "ok", "."]


def _dpo_rows():
    return [{"prompt": "q\n", "chosen": "good .", "rejected": "bad .", "prompt_id": 0},
            {"prompt": "q\n", "chosen": "good .", "rejected": "ok .", "prompt_id": 0},
            {"prompt": "q q\n", "chosen": "good .", "rejected": "bad .", "prompt_id": 1}]


def _train_dpo(pieces=DPO_PIECES, epochs=20):
    torch.manual_seed(0)
    sft = GPT(GPTConfig(vocab_size=2 + len(DPO_WORDS), n_layer=1, n_head=2, d_model=16, max_len=12))
    cfg = DPOConfig(beta=0.5, epochs=epochs, prompts_per_batch=2, lr=3e-3, warmup=2)
    return train_dpo(sft, Tokenizer(DPO_WORDS), _dpo_rows(), cfg, seed=0, device="cpu", pieces=pieces)


def test_dpo_with_the_reference_pieces_gives_the_default_numbers():
    policy, log = _train_dpo()
    for pieces in (DPOPieces(dpo_loss=dpo_loss, training_loop=dpo_loop),
                   DPOPieces(dpo_loss=lab11.q1.reference, training_loop=lab11.q3.reference)):
        other, other_log = _train_dpo(pieces)
        assert (other_log["loss"], other_log["margin"], other_log["accuracy"]) == (
            log["loss"], log["margin"], log["accuracy"])
        assert _same_weights(_state(other), _state(policy))
    assert log["accuracy"][-1] == 1.0 and log["margin"][-1] > 0  # the healthy run learns


def test_dpo_with_chosen_and_rejected_swapped_ranks_the_pairs_backwards():
    def swapped(pc, pr, rc, rr, beta, weights=None):
        return lab11.q1.reference(pr, pc, rr, rc, beta, weights)

    _, log = _train_dpo(DPOPieces(dpo_loss=swapped))
    assert log["loss"][0] == pytest.approx(math.log(2), abs=1e-3)  # its own loss falls from log 2 ...
    assert log["loss"][-1] < 0.5
    assert log["accuracy"][-1] == 0.0 and log["margin"][-1] < 0  # ... by ranking every pair backwards


def test_dpo_with_a_loop_that_never_steps_stays_flat():
    def no_step(policy, optimizer, tokenizer, batches, cfg, pieces, precision, record):
        from rlhf_minimal.dpo import response_logprobs

        for step, b in enumerate(batches):
            logprobs = response_logprobs(policy, tokenizer, b.prompts, b.responses)
            loss = pieces.dpo_loss(logprobs[b.chosen], logprobs[b.rejected], b.ref_logprobs[b.chosen],
                                   b.ref_logprobs[b.rejected], cfg.beta, b.weights)
            record(step, loss, logprobs, b)
            loss.backward()

    _, log = _train_dpo(DPOPieces(training_loop=no_step), epochs=4)
    assert all(v == pytest.approx(math.log(2), abs=1e-4) for v in log["loss"]) and set(log["margin"]) == {0.0}


# --------------------------------------------------------------------------- the stage cache
def _mine(chosen_rewards, rejected_rewards, weights=None):
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses.mean() if weights is None else (weights * losses).sum() / weights.sum()


def test_the_package_pieces_keep_the_package_key_and_others_get_their_own():
    assert pieces_key(REWARD_PIECES, REWARD_PIECES) is None
    assert pieces_key(RewardPieces(pairwise_loss=pairwise_loss), REWARD_PIECES) is None
    assert pieces_key(PPOPieces(gae=gae, policy_loss=policy_loss), PPO_PIECES) is None
    assert pieces_key(DPOPieces(dpo_loss=dpo_loss), DPO_PIECES) is None
    mine = pieces_key(RewardPieces(pairwise_loss=_mine), REWARD_PIECES)
    assert list(mine) == ["pairwise_loss"]
    # the key follows the source: another function, even with the same arithmetic, is another key
    assert pieces_key(RewardPieces(pairwise_loss=lab04.q1.reference), REWARD_PIECES) != mine
    step = pieces_key(PPOPieces(minibatch_step=lab05.q4.reference), PPO_PIECES)
    assert list(step) == ["minibatch_step"]
    assert entry_key("reward", {"seed": 0, "pieces": mine}) != entry_key("reward", {"seed": 0})


def test_a_stage_with_student_pieces_is_cached_beside_the_package_run(cache_dir, monkeypatch):
    """reward_model's key: the package's pieces (default or explicit) share the package's entry, a
    student's pieces get another one, and building it leaves the package's entry as it was."""
    import rlhf_minimal.reward as reward

    seen = []

    def fake_cached_model(stage, stage_cfg, build, settings, fresh=False):
        folder = cached(stage, stage_cfg, lambda f: (f / "built").write_text(str(len(seen))), fresh)
        seen.append(folder)
        raise StopIteration  # the stage's key and entry are what this test is about

    world = type("World", (), {"config": _WorldConfig()})()
    monkeypatch.setattr(reward, "sft_model", lambda *args, **kwargs: (world, None, None, None))
    monkeypatch.setattr(reward, "cached_model", fake_cached_model)
    for pieces in (REWARD_PIECES, RewardPieces(pairwise_loss=pairwise_loss), RewardPieces(pairwise_loss=_mine)):
        with pytest.raises(StopIteration):
            reward.reward_model("ci", 0, pieces=pieces)
    package, explicit, student = seen
    assert package == explicit and student != package
    assert (package / "built").read_text() == "0" and (student / "built").read_text() == "2"


@dataclass
class _WorldConfig:
    """A stand-in world configuration (reward_model puts asdict(world.config) into its key)."""
    seed: int = 0

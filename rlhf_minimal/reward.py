"""Stage 2: the reward model, trained on comparisons with the pairwise loss (eq-rm-loss).

* Initialised from the SFT model, the unembedding replaced by a scalar head
  (``GPT.with_scalar_head``, weights N(0, 1/sqrt(d+1))).
* The reward of (prompt, response) is the head's output at the last real token of
  ``prompt + response + EOS`` (EOS is left out only when the response filled the context).
* Loss: ``-log sigmoid(r_chosen - r_rejected - margin)``, computed with ``logsigmoid``. All pairs
  of one prompt go in the same batch and every response is scored once; the loss is the mean
  over a prompt's pairs, then the mean over prompts, so each prompt weighs the same whatever its
  number of pairs (InstructGPT's fix for overfitting).
* Several epochs with early stopping on the validation loss of held-out RM prompts. InstructGPT
  trained one epoch on 33k prompts with a 6B model; a 0.4M-parameter model with a few thousand
  prompts is still learning after one pass, and starts to memorise after two to five.
* Evaluated on a test set the reward model never sees: K = 8 SFT samples on every evaluation
  prompt, labelled by the same team: accuracy on the labels beside the ceiling, and the order of
  the gold judge, overall and by kind of difference (:func:`gold_order_accuracy`).
* After training, rewards are normalised to mean 0 and standard deviation 1 over the SFT model's
  samples; the shift and scale are saved with the model.
* A prior (eq-reward-prior): the SFT model's own mean log-likelihood per token, normalised the
  same way, is added with a weight fitted on the validation comparisons (:func:`fit_prior_weight`).
  The SFT model already orders many pairs right by how likely it finds them (a wrong fact is an
  unlikely token), and the head, trained on a few thousand prompts, learns what likelihood misses
  (declining, filler, form); the two err on different pairs.
"""
from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import RunSettings, pick_device, run_settings
from .judge import DEFAULT_PRIORITY, GoldJudge
from .model import GPT
from .pieces import pieces_key
from .evaluate import win_share
from .preference import (agreement, comparisons_dataset, group_by_prompt, label, label_quality,
                         make_labelers, pair_indices, prompt_batches, sample_k,
                         validate_comparisons)
from .scale import current_scale, preset
from .sft import sft_model
from .tokenizer import Tokenizer
from .train import FiniteGuard, Precision, cosine_lr, make_optimizer, progress, set_lr, set_seed
from .world import Task


@dataclass(frozen=True)
class RewardConfig:
    k: int = 8                       # responses ranked per prompt: C(8, 2) = 28 comparisons at most
    max_prompts: int | None = None   # use at most this many RM prompts (None: the whole split)
    n_labelers: int = 5
    labeler_temperature: float = 0.4     # perception noise of each labeler (Plackett-Luce)
    labeler_bias_std: float = 0.03       # spread of the labelers' taste for length, per word
    labeler_filler_range: tuple | None = (0.2, 1.2)   # labelers' price of filler (judge: 0.6)
    labeler_decline_range: tuple | None = (0.1, 0.5)  # labelers' value of declining (judge: 0.3)
    votes: int = 3                   # labelers ranking each prompt; a pair's label is their majority
    priority: tuple = DEFAULT_PRIORITY
    sample_temperature: float = 1.0
    val_share: float = 0.1           # RM prompts kept out of training, for early stopping
    prompts_per_batch: int = 8
    epochs: int = 10                 # at most; early stopping ends sooner (best epoch: 2-5)
    patience: int = 2                # epochs without a better validation loss before stopping
    lr: float = 3e-4
    warmup: int = 10
    margin: float | None = None
    from_sft: bool = True            # False: initialise from the base model instead
    n_layers: int | None = None      # keep only the first n transformer blocks (a smaller RM)
    eval_k: int = 8                  # responses per evaluation prompt in the held-out test set
    likelihood_prior: bool = True    # add the SFT model's mean log-likelihood, weighted by a fit on
                                     # the validation comparisons (eq-reward-prior)

    @staticmethod
    def preset(scale: str) -> "RewardConfig":
        return RewardConfig(**preset(scale, "reward"))


# The labeler fields of RewardConfig. Its defaults are the course's team (REALISTIC_LABELERS):
# under 80% agreement between two labelers, but disagreeing where people do (how much filler
# costs, whether "i do not know" beats a weak answer, length) and rarely on a false fact; each
# prompt is ranked by three of them and each pair's label is their majority. NOISY_LABELERS is
# the earlier team, one labeler per prompt and as likely to slip on a false fact as on taste,
# kept for the lesson of what label noise costs (chapter 4).
LABELER_FIELDS = ("labeler_temperature", "labeler_bias_std", "labeler_filler_range",
                  "labeler_decline_range", "votes")
REALISTIC_LABELERS = {name: getattr(RewardConfig(), name) for name in LABELER_FIELDS}
NOISY_LABELERS = dict(labeler_temperature=0.5, labeler_bias_std=0.01, labeler_filler_range=None,
                      labeler_decline_range=None, votes=1)


def pairwise_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                  margin: float | torch.Tensor | None = None,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """eq-rm-loss: mean of ``-log sigmoid(r_chosen - r_rejected - margin)``.

    ``logsigmoid`` keeps it finite for large negative gaps, where ``log(sigmoid(x))`` underflows
    to log(0). ``weights`` (optional, one per pair) makes it a weighted mean, sum(w l) / sum(w):
    training weighs each pair by 1 / (its prompt's number of pairs), so each prompt counts once.
    """
    gap = chosen_rewards - rejected_rewards
    if margin is not None:
        gap = gap - margin
    losses = -F.logsigmoid(gap)
    if weights is None:
        return losses.mean()
    return (weights * losses).sum() / weights.sum()


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, for left or right padding."""
    width = mask.size(1)
    return width - 1 - mask.flip(-1).long().argmax(-1)


def encode_pair_text(tokenizer: Tokenizer, prompt: str, response: str, max_len: int) -> list[int]:
    ids = tokenizer.encode(prompt) + tokenizer.encode(response)
    if len(ids) > max_len:
        raise ValueError(f"prompt plus response is {len(ids)} tokens, longer than the context "
                         f"({max_len}): {prompt.strip()!r} -> {response[:40]!r}...")
    return ids + [tokenizer.eos_id] if len(ids) < max_len else ids


def right_pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[B, T]`` padded on the right with ``pad_id``, and the mask (1 on real tokens)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    return ids.to(device), mask.to(device)


def reward_at_last_token(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reward of each sequence: the scalar head's output ``values [B, T]`` at its last real
    token (``mask [B, T]``, 1 on real tokens, right or left padding). Returns ``[B]``."""
    return values.gather(1, last_token_index(mask)[:, None]).squeeze(1)


@dataclass(frozen=True)
class RewardPieces:
    """The pieces of reward-model training that lab 4 has students write. The defaults are the
    package's own; a run with other pieces gets its own cache entry
    (:func:`~rlhf_minimal.pieces.pieces_key`)."""

    pairwise_loss: Callable = pairwise_loss               # (chosen, rejected, weights=None) -> loss, eq-rm-loss
    reward_at_last_token: Callable = reward_at_last_token  # (values [B, T], mask [B, T]) -> rewards [B]


REWARD_PIECES = RewardPieces()


def score_sequences(model: GPT, sequences: list[list[int]], pad_id: int, device,
                    read_out: Callable = reward_at_last_token) -> torch.Tensor:
    """Scalar-head output at the last real token of each right-padded sequence (``read_out``)."""
    ids, mask = right_pad(sequences, pad_id, device)
    return read_out(model(ids, mask), mask)


class RewardModel:
    """A scalar-head GPT plus its normalisation; ``score`` gives normalised rewards.

    With a ``prior`` (the SFT model's :class:`LikelihoodReward`), ``score`` is eq-reward-prior:
    the normalised head plus ``prior_weight`` times the normalised likelihood. ``logit_scale``
    turns a difference of scores into the log-odds that one response is preferred (for the
    head alone, the head's own scale, which the pairwise loss trained)."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, shift: float = 0.0, scale: float = 1.0,
                 prior: "RewardModel | None" = None, prior_weight: float = 0.0,
                 logit_scale: float | None = None):
        self.model, self.tokenizer, self.shift, self.scale = model, tokenizer, shift, scale
        self.prior, self.prior_weight = prior, prior_weight
        self.logit_scale = scale if logit_scale is None else logit_scale

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def raw(self, prompts: list[str], responses: list[str], batch_size: int = 256) -> torch.Tensor:
        """The head's output at the last real token (no normalisation, no prior)."""
        self.model.eval()
        out = []
        for start in range(0, len(prompts), batch_size):
            seqs = [encode_pair_text(self.tokenizer, p, r, self.model.config.max_len)
                    for p, r in zip(prompts[start:start + batch_size], responses[start:start + batch_size])]
            out.append(score_sequences(self.model, seqs, self.tokenizer.pad_id, self.device).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def fit_normalisation(self, prompts: list[str], responses: list[str]) -> "RewardModel":
        """Set the shift and scale (eq-reward-normalise) so that the rewards of these responses,
        the SFT model's samples, have mean 0 and standard deviation 1."""
        raw = self.raw(prompts, responses)
        self.shift, self.scale = raw.mean().item(), max(raw.std().item(), 1e-6)
        self.logit_scale = self.scale
        return self

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Normalised rewards: mean 0, std 1 over the SFT model's samples, plus the weighted prior."""
        head = (self.raw(prompts, responses) - self.shift) / self.scale
        if self.prior is None or self.prior_weight == 0:
            return head
        return head + self.prior_weight * self.prior.score(prompts, responses)


class LikelihoodReward(RewardModel):
    """The SFT model's own mean log-likelihood per token of a response (EOS included), normalised
    like the reward model (:meth:`RewardModel.fit_normalisation` on SFT samples).

    Alone it is the sharpening control of chapter 6: PPO against it uses no preference at all
    and can only make the policy surer of what SFT already prefers. Weighted by a fit on the
    comparisons, it is the reward model's prior (eq-reward-prior)."""

    @torch.no_grad()
    def raw(self, prompts: list[str], responses: list[str], batch_size: int = 256) -> torch.Tensor:
        self.model.eval()
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk = list(zip(prompts[start:start + batch_size], responses[start:start + batch_size]))
            seqs = [encode_pair_text(self.tokenizer, p, r, self.model.config.max_len) for p, r in chunk]
            ids, mask = right_pad(seqs, self.tokenizer.pad_id, self.device)
            logp = F.log_softmax(self.model(ids, mask).float(), -1)[:, :-1]
            logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # log pi(token t+1 | tokens up to t)
            starts = torch.tensor([len(self.tokenizer.encode(p)) for p, _ in chunk], device=self.device)
            predicted = torch.arange(1, ids.size(1), device=self.device)[None]
            in_response = (predicted >= starts[:, None]) & mask[:, 1:].bool()
            out.append(((logp * in_response).sum(1) / in_response.sum(1)).cpu())
        return torch.cat(out) if out else torch.zeros(0)


class WorseThanChance(ValueError):
    """The reward model's head orders the validation comparisons worse than chance."""


def fit_prior_weight(head: RewardModel, prior: RewardModel, rows) -> dict:
    """eq-reward-prior's weight: a logistic regression without intercept on comparisons ``rows``,
    P(chosen preferred) = sigmoid(c * (delta head + alpha * delta prior)), with the normalised
    scores of the reward model's head and of the prior. Returns ``alpha`` (``prior_weight``), ``c``
    (``logit_scale``) and the mean log-loss with and without the prior.

    The rows should be comparisons the head did not train on (the validation prompts): on its own
    training pairs the head looks better than it is, and alpha would come out too small."""
    if not len(rows):
        raise ValueError("fit_prior_weight needs comparisons; pass the validation split's rows")
    prompts = [r["prompt"] for r in rows]
    features = torch.stack([
        head.score(prompts, [r["chosen"] for r in rows]) - head.score(prompts, [r["rejected"] for r in rows]),
        prior.score(prompts, [r["chosen"] for r in rows]) - prior.score(prompts, [r["rejected"] for r in rows]),
    ], 1).double()
    weights = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -F.logsigmoid(features @ weights).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    c, both = weights.detach().tolist()
    if c <= 0:
        raise WorseThanChance(f"the reward model's head orders these {len(rows)} comparisons worse than chance "
                         f"(fitted weight {c:.3f}); train it longer or on more comparisons before adding a prior")
    with torch.no_grad():
        loss = -F.logsigmoid(features @ weights).mean().item()
        head_only = -F.logsigmoid(features[:, 0] * head.logit_scale).mean().item()
    return {"alpha": round(both / c, 4), "c": round(c, 4), "loss": round(loss, 4), "loss_head_only": round(head_only, 4)}


def truncate(model: GPT, n_layers: int) -> GPT:
    """The same model with only its first ``n_layers`` transformer blocks (a smaller reward model
    that keeps the lower layers of the SFT model)."""
    from .model import GPTConfig

    if not 1 <= n_layers <= model.config.n_layer:
        raise ValueError(f"n_layers must be between 1 and {model.config.n_layer}, got {n_layers}")
    small = GPT(GPTConfig(**{**model.config.to_dict(), "n_layer": n_layers}))
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith("blocks.") or int(k.split(".")[1]) < n_layers}
    small.load_state_dict(state)
    return small.to(next(model.parameters()).device)


def _batch_loss(model, tokenizer, groups, margin, device, pieces: RewardPieces = REWARD_PIECES):
    """eq-rm-loss over a batch of prompts: every response scored once, the loss averaged over each
    prompt's pairs and then over prompts, so every prompt weighs the same. A margin is subtracted
    from the chosen rewards (r_c - m - r_r), so that ``pieces.pairwise_loss`` needs no margin."""
    sequences = [encode_pair_text(tokenizer, g["prompt"], r, model.config.max_len)
                 for g in groups for r in g["responses"]]
    chosen, rejected, weights = (t.to(device, non_blocking=True) for t in pair_indices(groups))
    rewards = score_sequences(model, sequences, tokenizer.pad_id, device, pieces.reward_at_last_token).float()
    chosen_rewards = rewards[chosen] if margin is None else rewards[chosen] - margin
    return pieces.pairwise_loss(chosen_rewards, rewards[rejected], weights=weights)


@torch.no_grad()
def validation_loss(model, tokenizer, groups, margin, device, prompts_per_batch: int = 32) -> float:
    """eq-rm-loss over ``groups`` (every prompt weighing the same), without gradient, with the
    package's own loss and read-out whatever pieces trained the model: a wrong piece cannot grade
    itself (the loss rises above log 2 when the model ranks the pairs worse than a constant)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(groups), prompts_per_batch):
        chunk = groups[i:i + prompts_per_batch]
        total += _batch_loss(model, tokenizer, chunk, margin, device).item() * len(chunk)
    model.train(was_training)
    return total / max(len(groups), 1)


def train_reward_model(init: GPT, tokenizer: Tokenizer, rows, cfg: RewardConfig, seed: int = 0,
                       device=None, val_rows=None, settings: RunSettings | None = None,
                       pieces: RewardPieces = REWARD_PIECES) -> tuple[GPT, dict]:
    """Train a scalar-head copy of ``init`` on comparison ``rows`` (with ``prompt_id``).

    Up to ``cfg.epochs`` epochs. With ``val_rows`` (comparisons on other prompts), the validation
    loss is measured after every epoch, training stops once it has not improved for
    ``cfg.patience`` epochs, and the weights of the best epoch are returned (early stopping).
    ``settings`` (precision) default to the device's own (:func:`rlhf_minimal.device.run_settings`).
    ``pieces`` (the loss and the read-out of the reward) default to the package's own (lab 4 passes
    the student's); they train the model, and the validation loss is always the package's."""
    validate_comparisons(rows)
    settings = settings or RunSettings(pick_device(device))
    device = settings.device
    set_seed(seed)
    groups = group_by_prompt(rows)
    val_groups = group_by_prompt(val_rows) if val_rows else None
    model = copy.deepcopy(init).to(device).with_scalar_head()
    if cfg.n_layers is not None:
        model = truncate(model, cfg.n_layers)
    model.train()
    optimizer = make_optimizer(model, cfg.lr)
    precision, guard = Precision(device, settings.precision), FiniteGuard("reward model", device)
    losses = []
    per_epoch = -(-len(groups) // cfg.prompts_per_batch)
    total = per_epoch * cfg.epochs
    log = {"step": [], "loss": [], "n_prompts": len(groups), "n_pairs": len(rows),
           "epoch_val_loss": [], "best_epoch": None}
    rng = random.Random(seed)
    step, start, best, waited = 0, time.time(), None, 0
    bar = progress(total=total, desc="reward model")
    for epoch in range(cfg.epochs):
        for batch in prompt_batches(groups, cfg.prompts_per_batch, rng):
            set_lr(optimizer, cosine_lr(step, total, cfg.lr, cfg.warmup))
            with precision.autocast():
                loss = _batch_loss(model, tokenizer, batch, cfg.margin, device, pieces)
            guard(loss, step)
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.clip_grad_norm(model, optimizer, 1.0)
            precision.step(optimizer)
            log["step"].append(step)
            losses.append(loss.detach())
            step += 1
            bar.update(1)
        if val_groups is None:
            continue
        val = validation_loss(model, tokenizer, val_groups, cfg.margin, device)
        log["epoch_val_loss"].append(round(val, 4))
        if best is None or val < best[0]:
            best, waited = (val, epoch, copy.deepcopy(model.state_dict())), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    guard.close()
    bar.close()
    if best is not None:
        model.load_state_dict(best[2])
        log["best_epoch"] = best[1] + 1
    log["loss"] = [round(v, 4) for v in torch.stack(losses).float().tolist()] if losses else []
    log["precision"] = precision.name
    log["seconds"] = round(time.time() - start, 1)
    return model.eval(), log


@torch.no_grad()
def pairwise_accuracy(rm: RewardModel, rows) -> float:
    """Share of comparisons where the chosen response gets the higher reward (ties count half)."""
    if not len(rows):
        return float("nan")
    chosen = rm.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = rm.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    return round(win_share(chosen, rejected).item(), 4)


@torch.no_grad()
def calibration(rm: RewardModel, rows, bins: int = 10) -> dict:
    """Predicted preference probability sigmoid(c (r_a - r_b)) against how often a was chosen
    (``c``: the reward model's ``logit_scale``).

    Each comparison counts in both orientations, so the diagram is symmetric about 0.5.
    """
    chosen = rm.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = rm.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    p = torch.sigmoid(rm.logit_scale * (chosen - rejected))
    predicted = torch.cat([p, 1 - p])
    observed = torch.cat([torch.ones_like(p), torch.zeros_like(p)])
    edges = torch.linspace(0, 1, bins + 1)
    out = {"predicted": [], "observed": [], "count": []}
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (predicted >= lo) & ((predicted < hi) | (hi == 1))
        if inside.any():
            out["predicted"].append(round(predicted[inside].mean().item(), 4))
            out["observed"].append(round(observed[inside].mean().item(), 4))
            out["count"].append(int(inside.sum()))
    return out


def _correlation(xs, ys) -> float:
    x, y = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return round(torch.corrcoef(torch.stack([x, y]))[0, 1].item(), 4)


def length_and_repetition_probe(rm: RewardModel, judge: GoldJudge, tasks: list[Task],
                                responses: list[str]) -> dict:
    """Does the reward model reward the wrong thing?

    * correlation of reward and of gold score with response length (words);
    * the change in reward, and in gold score, when an acceptable answer's first sentence is
      repeated twice more (repetition adds nothing and the gold judge counts it as filler).
    """
    rewards = rm.score([t.prompt for t in tasks], responses).tolist()
    gold = [judge.score(t, r).score for t, r in zip(tasks, responses)]
    lengths = [len(r.split()) for r in responses]
    good = [(t, r) for t, r in zip(tasks, responses) if judge.score(t, r).acceptable and r.count(".") >= 1]
    repeated = []
    for t, r in good:
        first = r.split(" . ")[0].rstrip(" .") + " ."
        repeated.append(f"{r} {first} {first}")
    rep_tasks = [t for t, _ in good]
    if rep_tasks:
        before = rm.score([t.prompt for t in rep_tasks], [r for _, r in good])
        after = rm.score([t.prompt for t in rep_tasks], repeated)
        gold_delta = sum(judge.score(t, x).score - judge.score(t, r).score
                         for (t, r), x in zip(good, repeated)) / len(good)
        reward_delta = (after - before).mean().item()
    else:
        gold_delta = reward_delta = float("nan")
    return {"reward_vs_length": _correlation(rewards, lengths),
            "gold_vs_length": _correlation(gold, lengths),
            "reward_vs_gold": _correlation(rewards, gold),
            "repetition_reward_change": round(reward_delta, 4),
            "repetition_gold_change": round(gold_delta, 4),
            "lengths": lengths, "rewards": [round(x, 4) for x in rewards], "gold": gold}


def reward_model(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
                 pieces: RewardPieces = REWARD_PIECES, **overrides):
    """The reward model for ``scale`` and ``seed`` (cached), trained from the cached SFT model.

    ``overrides`` change fields of :class:`RewardConfig` (for example ``k=2, max_prompts=300``).
    Returns ``(world, tokenizer, RewardModel, info)``; ``info`` holds the training log, the
    held-out evaluation (accuracy, ceiling, agreement, calibration, probes) and the path of the
    comparison data set on disk.

    ``pieces`` (:class:`RewardPieces`) train with other functions than the package's, lab 4's
    student's: the run is cached under its own key and evaluated like the package's (the
    evaluation reads rewards with the package's read-out, as every later stage does).
    """
    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    cfg = RewardConfig(**{**asdict(RewardConfig.preset(scale)), **overrides})
    stage_cfg = {"scale": scale, "seed": seed, "world": asdict(world.config), "reward": config_json(cfg)}
    if pieces_key(pieces, REWARD_PIECES):
        stage_cfg["pieces"] = pieces_key(pieces, REWARD_PIECES)
    settings = run_settings(device)

    def build(folder):
        if cfg.from_sft:
            init = sft
        else:
            from .pretrain import base_model
            init = base_model(scale, seed, device=device)[2]
        tasks = list(world.splits["rm"])
        random.Random(f"rm-prompts-{seed}").shuffle(tasks)
        n_val = max(2, int(len(tasks) * cfg.val_share))
        val_tasks, train_tasks = tasks[:n_val], tasks[n_val:]
        train_tasks = train_tasks[:cfg.max_prompts] if cfg.max_prompts else train_tasks
        # the test set: K responses to every evaluation prompt, which no stage trains on
        test_tasks = [t for t in world.splits["eval"] if t.lang == "a"]
        labelers = make_labelers(world, cfg.n_labelers, cfg.priority, cfg.labeler_temperature,
                                 cfg.labeler_bias_std, seed, cfg.labeler_filler_range,
                                 cfg.labeler_decline_range)
        train_responses = sample_k(sft, tokenizer, train_tasks, cfg.k, cfg.sample_temperature, seed=seed + 1)
        val_responses = sample_k(sft, tokenizer, val_tasks, cfg.k, cfg.sample_temperature, seed=seed + 2)
        test_responses = sample_k(sft, tokenizer, test_tasks, cfg.eval_k, cfg.sample_temperature, seed=seed)
        train_rows = label(train_tasks, train_responses, labelers, seed + 1, cfg.votes)
        val_rows = label(val_tasks, val_responses, labelers, seed + 2, cfg.votes)
        held_rows = label(test_tasks, test_responses, labelers, seed, cfg.votes)
        model, log = train_reward_model(init, tokenizer, train_rows, cfg, seed, val_rows=val_rows,
                                        settings=settings, pieces=pieces)
        sft_prompts = [t.prompt for t, rs in zip(train_tasks, train_responses) for _ in rs]
        sft_answers = [r for rs in train_responses for r in rs]
        rm = RewardModel(model, tokenizer).fit_normalisation(sft_prompts, sft_answers)
        gold = GoldJudge(world)
        prior_info = {}
        if cfg.likelihood_prior:
            prior = LikelihoodReward(sft, tokenizer).fit_normalisation(sft_prompts, sft_answers)
            try:
                fit = fit_prior_weight(rm, prior, val_rows)
            except WorseThanChance as err:
                if "pieces" not in stage_cfg:
                    raise
                # a student's wrong piece trained a head that ranks backwards: evaluate it as it is
                print(f"no likelihood prior: {err}")
                fit = {"skipped": str(err)}
            prior_info = {"prior_fit": fit,
                          "gold_order_head": gold_order_accuracy(rm, test_tasks, test_responses, gold),
                          "gold_order_likelihood": gold_order_accuracy(prior, test_tasks, test_responses, gold)}
            if "skipped" not in fit:
                rm.prior, rm.prior_weight, rm.logit_scale = prior, fit["alpha"], fit["c"]
        gold_order = gold_order_accuracy(rm, test_tasks, test_responses, gold)
        evaluation = {
            "accuracy": pairwise_accuracy(rm, held_rows),
            "train_accuracy": pairwise_accuracy(rm, train_rows[:2000]),
            **label_quality(held_rows, labelers, gold),
            "agreement": agreement(test_tasks, test_responses, labelers, gold),
            "accuracy_vs_gold": gold_order["all"],
            "gold_order": gold_order,
            "calibration": calibration(rm, held_rows),
            "probe": length_and_repetition_probe(
                rm, gold, [t for t, rs in zip(test_tasks, test_responses) for _ in rs],
                [r for rs in test_responses for r in rs]),
            "n_train_pairs": len(train_rows), "n_val_pairs": len(val_rows), "n_heldout_pairs": len(held_rows),
            "n_train_prompts": len(train_tasks), "n_val_prompts": n_val, "n_heldout_prompts": len(test_tasks),
            "parameters": model.num_parameters(),
            **prior_info,
        }
        norm = {"shift": rm.shift, "scale": rm.scale, "prior_weight": rm.prior_weight, "logit_scale": rm.logit_scale}
        if rm.prior is not None:
            norm.update(prior_shift=rm.prior.shift, prior_scale=rm.prior.scale)
        save_checkpoint(folder, model, {"stage": stage_cfg, "normalisation": norm}, log=log, evaluation=evaluation)
        comparisons_dataset(train_rows).save_to_disk(str(folder / "comparisons"))
        comparisons_dataset(held_rows).save_to_disk(str(folder / "heldout_comparisons"))

    model, folder = cached_model("reward", stage_cfg, build, settings, fresh)
    norm = json.loads((folder / "config.json").read_text())["normalisation"]
    prior = (LikelihoodReward(sft, tokenizer, norm["prior_shift"], norm["prior_scale"])
             if "prior_shift" in norm else None)
    rm = RewardModel(model, tokenizer, norm["shift"], norm["scale"], prior, norm.get("prior_weight", 0.0),
                     norm.get("logit_scale"))
    info = {"log": read_json(folder, "log"), "evaluation": read_json(folder, "evaluation"),
            "comparisons": str(folder / "comparisons"),
            "heldout_comparisons": str(folder / "heldout_comparisons"), "config": cfg}
    return world, tokenizer, rm, info


DIFFERENCE_KINDS = ("truth", "refusal", "unanswerable", "filler", "form")


def difference_kind(task: Task, a, b) -> str:
    """What separates two responses the gold judge scores differently (verdicts ``a`` and ``b``):
    ``unanswerable`` or ``refusal`` (the prompt's family), ``truth`` (one states something false),
    ``filler`` (one pads its answer), or ``form`` (the rest: shape, partial or off-topic answers)."""
    if task.family == "unanswerable":
        return "unanswerable"
    if task.family == "refuse":
        return "refusal"
    if a.truthful != b.truthful:
        return "truth"
    if ("filler" in a.notes) != ("filler" in b.notes):
        return "filler"
    return "form"


def gold_order_accuracy(rm: RewardModel, tasks, responses, gold: GoldJudge) -> dict:
    """How often the reward model orders two responses to a prompt as the gold judge does, over
    every pair of distinct responses with different gold scores; ``all`` and per
    :func:`difference_kind`, each with its number of pairs (``n_<kind>``). A tie in reward counts half."""
    hits, counts = {}, {}
    for task, rs in zip(tasks, responses):
        distinct = list(dict.fromkeys(rs))
        if len(distinct) < 2:
            continue
        rewards = rm.score([task.prompt] * len(distinct), distinct).tolist()
        verdicts = [gold.score(task, r) for r in distinct]
        for i in range(len(distinct)):
            for j in range(i + 1, len(distinct)):
                gap = verdicts[i].score - verdicts[j].score
                if gap == 0:
                    continue
                kind = difference_kind(task, verdicts[i], verdicts[j])
                hit = 1.0 if (rewards[i] - rewards[j]) * gap > 0 else (0.5 if rewards[i] == rewards[j] else 0.0)
                for key in ("all", kind):
                    hits[key] = hits.get(key, 0.0) + hit
                    counts[key] = counts.get(key, 0) + 1
    out = {key: round(hits[key] / counts[key], 4) for key in ("all", *DIFFERENCE_KINDS) if key in counts}
    out.update({f"n_{key}": counts.get(key, 0) for key in ("all", *DIFFERENCE_KINDS)})
    return out


def k_study(scale: str | None = None, seed: int = 0, ks=(2, 4, 9)) -> list[dict]:
    """Lab 3's experiment: one labelling budget (the hours K = 2 takes on every training prompt,
    :func:`rlhf_minimal.preference.labeling_seconds`) spent as K answers per prompt for each K in
    ``ks``, so fewer prompts for larger K; one reward model each. A row per K: prompts, pairs,
    hours, held-out accuracy, its ceiling and the accuracy against the gold order."""
    from .preference import labeling_seconds

    scale = current_scale(scale)
    world = sft_model(scale, seed)[0]
    n_rm = len(world.splits["rm"])
    train_pool = n_rm - max(2, int(n_rm * RewardConfig.preset(scale).val_share))
    budget = train_pool * labeling_seconds(2)
    rows = []
    for k in ks:
        ev = reward_model(scale, seed, k=k, max_prompts=int(budget // labeling_seconds(k)))[3]["evaluation"]
        rows.append({"K": k, "prompts": ev["n_train_prompts"], "pairs": ev["n_train_pairs"],
                     "hours": round(budget / 3600, 1), "accuracy": ev["accuracy"], "ceiling": ev["ceiling"],
                     "accuracy vs gold order": ev["accuracy_vs_gold"]})
    return rows


def depth_study(scale: str | None = None, seed: int = 0) -> list[dict]:
    """Lab 4's experiment: the reward model kept to its first 1, 2, ... layers of the SFT network
    (:func:`truncate`), each trained on the same comparisons. A row per depth: layers,
    parameters, held-out accuracy, its ceiling and the accuracy against the gold order."""
    scale = current_scale(scale)
    n_layer = sft_model(scale, seed)[2].config.n_layer
    rows = []
    for n_layers in range(1, n_layer + 1):
        ev = reward_model(scale, seed, n_layers=None if n_layers == n_layer else n_layers)[3]["evaluation"]
        rows.append({"layers": n_layers, "parameters": ev["parameters"], "accuracy": ev["accuracy"],
                     "ceiling": ev["ceiling"], "accuracy vs gold order": ev["accuracy_vs_gold"]})
    return rows

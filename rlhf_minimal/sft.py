"""Stage 1: supervised fine-tuning on demonstrations, loss on response tokens only (eq-sft-loss).

Each demonstration is ``prompt + completion + EOS``. The targets of the prompt tokens are set to
-100, so the loss is the mean negative log-likelihood over response tokens (the EOS included:
the model must learn to stop). Every epoch records the training loss, the validation loss on
held-out demonstrations and, for evaluation only, the gold judge's verdict on the held-out
prompts: as in InstructGPT, validation loss can rise while the answers keep getting better.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass

import torch

from .cache import cached_model, read_json, save_checkpoint
from .data import DataError, validate
from .device import RunSettings, pick_device, run_settings
from .evaluate import gold_evaluation
from .judge import GoldJudge, tasks_from_rows
from .model import GPT, lm_loss
from .graphs import graph_training
from .pretrain import base_model, lm_training_step
from .scale import current_scale, preset
from .tokenizer import Tokenizer
from .train import FiniteGuard, Precision, cosine_lr, make_optimizer, progress, set_lr, set_seed
from .world import World, demonstrations


@dataclass(frozen=True)
class SFTConfig:
    epochs: int = 14          # cpu: held-out gold score plateaus at 9-14 epochs, while the
    batch_size: int = 32      # validation loss is lowest at 9 and then rises (lab 2's figure)
    lr: float = 1e-3
    warmup: int = 20
    val_share: float = 0.1
    max_new_tokens: int = 48
    sloppy_share: float | None = None   # None: the world's share of sloppy demonstrations

    @staticmethod
    def preset(scale: str) -> "SFTConfig":
        return SFTConfig(**preset(scale, "sft"))


def encode_demonstrations(tokenizer: Tokenizer, rows, max_len: int):
    """Right-padded ``(inputs, targets)`` with targets -100 on prompt tokens and padding.

    A row whose prompt plus completion does not fit the context is refused (never truncated).
    """
    validate(rows, ("prompt", "completion"))
    sequences, prompt_lengths = [], []
    for i, row in enumerate(rows):
        prompt = tokenizer.encode(row["prompt"])
        completion = tokenizer.encode(row["completion"], add_eos=True)
        if len(prompt) + len(completion) > max_len + 1:
            raise DataError(f"row {i}: prompt ({len(prompt)} tokens) plus completion "
                            f"({len(completion)} tokens with EOS) is longer than the context of "
                            f"{max_len} tokens; shorten it or use a model with a larger max_len")
        sequences.append(prompt + completion)
        prompt_lengths.append(len(prompt))
    width = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(sequences), width), tokenizer.pad_id, dtype=torch.long)
    targets = torch.full((len(sequences), width), -100, dtype=torch.long)
    for row, (seq, n_prompt) in enumerate(zip(sequences, prompt_lengths)):
        seq = torch.tensor(seq)
        inputs[row, :len(seq) - 1] = seq[:-1]
        targets[row, n_prompt - 1:len(seq) - 1] = seq[n_prompt:]  # predict only response tokens
    return inputs, targets


def sft_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """eq-sft-loss: mean negative log-likelihood of the response tokens (targets != -100)."""
    return lm_loss(logits, targets)


def _batches(inputs, targets, batch_size, generator, shuffle=True, width_multiple: int = 1):
    """Batches with the columns that are padding in every row dropped: those after each row's last
    target (its EOS), whatever the pad id. ``width_multiple`` rounds the width up (CUDA graphs then
    see a few shapes instead of one per width); the extra columns are right padding with ignored
    targets, which a causal model's real tokens never attend to."""
    order = torch.randperm(len(inputs), generator=generator) if shuffle else torch.arange(len(inputs))
    for start in range(0, len(inputs), batch_size):
        index = order[start:start + batch_size]
        x, y = inputs[index], targets[index]
        trained = (y != -100).any(0)
        width = int(trained.nonzero().max()) + 1 if trained.any() else x.size(1)
        width = min(x.size(1), -(-width // width_multiple) * width_multiple)
        yield x[:, :width], y[:, :width]


@torch.no_grad()
def _loss_on(model, inputs, targets, batch_size, device) -> float:
    model.eval()
    total, count = 0.0, 0
    for x, y in _batches(inputs, targets, batch_size, None, shuffle=False):
        n = int((y != -100).sum())
        total += sft_loss(model(x.to(device)), y.to(device)).item() * n
        count += n
    model.train()
    return total / max(count, 1)


def train_sft(model: GPT, tokenizer: Tokenizer, world: World, rows: list, cfg: SFTConfig,
              seed: int = 0, device=None, judge: GoldJudge | None = None,
              settings: RunSettings | None = None) -> tuple[GPT, dict]:
    """Fine-tune a copy of ``model`` on demonstration ``rows``; returns it and the per-epoch log.
    The step is pretraining's (:func:`rlhf_minimal.pretrain.lm_training_step`) on targets that
    ignore the prompt (eq-sft-loss)."""
    settings = settings or RunSettings(pick_device(device))
    device = settings.device
    generator = set_seed(seed)
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    n_val = max(1, int(len(rows) * cfg.val_share))
    val_rows, train_rows = rows[:n_val], rows[n_val:]
    x_train, y_train = encode_demonstrations(tokenizer, train_rows, model.config.max_len)
    x_val, y_val = encode_demonstrations(tokenizer, val_rows, model.config.max_len)
    judge = judge or GoldJudge(world)
    val_tasks = tasks_from_rows(val_rows)
    model = copy.deepcopy(model).to(device).train()
    precision, guard = Precision(device, settings.precision), FiniteGuard("SFT", device)
    graphs = graph_training(settings, precision)
    train_step, optimizer = lm_training_step(model, make_optimizer(model, cfg.lr), precision, graphs)
    steps_per_epoch = -(-len(x_train) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    log = {"epoch": [], "train_loss": [], "val_loss": [], "val_acceptable": [], "val_score": [],
           "n_train": len(train_rows), "n_val": n_val}

    def evaluate(epoch, train_loss):
        result = gold_evaluation(model, tokenizer, judge, val_tasks, max_new_tokens=cfg.max_new_tokens)
        log["epoch"].append(epoch)
        log["train_loss"].append(round(train_loss, 4) if train_loss is not None else None)
        log["val_loss"].append(round(_loss_on(model, x_val, y_val, 64, device), 4))
        log["val_acceptable"].append(result["table"]["all"]["acceptable"])
        log["val_score"].append(result["table"]["all"]["score"])
        model.train()

    start = time.time()
    evaluate(0, None)
    step = 0
    bar = progress(total=total, desc="SFT")
    for epoch in range(1, cfg.epochs + 1):
        losses = []
        for x, y in _batches(x_train, y_train, cfg.batch_size, generator,
                             width_multiple=16 if graphs else 1):
            set_lr(optimizer, cosine_lr(step, total, cfg.lr, cfg.warmup))
            loss = train_step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            guard(loss, step)
            losses.append(loss)
            step += 1
            bar.update(1)
        guard.close()
        evaluate(epoch, torch.stack(losses).float().mean().item())
        bar.set_postfix(val_loss=log["val_loss"][-1], acceptable=log["val_acceptable"][-1])
    bar.close()
    log["seconds"] = round(time.time() - start, 1)
    log["precision"] = precision.name
    return model.eval(), log


def sft_model(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
              sloppy_share: float | None = None, size: str = "medium"):
    """The SFT model for ``scale`` and ``seed`` (cached). Returns ``(world, tokenizer, model, log)``.

    ``sloppy_share`` overrides the share of sloppy demonstrations (lab 2 varies it); ``size``
    (small, medium, large) fine-tunes the base model of that size.
    """
    scale = current_scale(scale)
    world, tokenizer, base, base_log = base_model(scale, seed, device=device, size=size)
    cfg = SFTConfig.preset(scale)
    if sloppy_share is not None:
        cfg = SFTConfig(**{**asdict(cfg), "sloppy_share": sloppy_share})
    stage_cfg = {"world": asdict(world.config), "sft": asdict(cfg), "seed": seed, "scale": scale,
                 "size": size}

    settings = run_settings(device)

    def build(folder):
        rows = demonstrations(world, "sft", cfg.sloppy_share)
        model, log = train_sft(base, tokenizer, world, rows, cfg, seed, settings=settings)
        save_checkpoint(folder, model, {"stage": stage_cfg}, log=log)

    model, folder = cached_model("sft", stage_cfg, build, settings, fresh)
    return world, tokenizer, model, read_json(folder, "log")

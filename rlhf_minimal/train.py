"""What every training stage shares: seeding, the optimizer, the learning-rate schedule,
the NaN/inf guard and progress bars."""
from __future__ import annotations

import contextlib
import math
import random

import numpy as np
import torch
from tqdm.auto import tqdm


class TrainingDiverged(RuntimeError):
    pass


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order and sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.1,
                   betas=(0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, LayerNorms or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    # on a GPU the fused kernel is one launch per step, and it lets fp16 loss scaling skip a bad
    # step without the host waiting for the device; on the CPU the default keeps earlier numbers
    fused = True if any(p.is_cuda for p in decay + no_decay) else None
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas,
                             fused=fused)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate, in place when it is a tensor (so a graph sees it)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``floor * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def check_finite(loss: torch.Tensor, stage: str, step: int) -> None:
    """Stop with a clear message when the loss is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise TrainingDiverged(
            f"{stage}: the loss became {loss.detach().float().cpu().item()} at step {step}. "
            "Training stopped: lower the learning rate, check the data for empty rows, or "
            "clip gradients harder.")


class FiniteGuard:
    """Stops training with a clear message when the loss turns NaN or infinite.

    On the CPU the check runs every step. On a GPU, reading a value back forces the host to wait
    for the device, so the guard only records the first bad step on the device and reads it every
    ``every`` steps (and at :meth:`close`); training stops at most ``every`` steps late.
    ``every=None`` means 1 on the CPU and 25 on a GPU.
    """

    def __init__(self, stage: str, device, every: int | None = None):
        self.stage = stage
        self.every = every or (1 if torch.device(device).type == "cpu" else 25)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)
        self.calls = 0

    def __call__(self, loss: torch.Tensor, step: int) -> None:
        if self.every == 1:
            check_finite(loss, self.stage, step)
            return
        bad = ~torch.isfinite(loss.detach()).all()
        new = bad & (self.first_bad < 0)
        self.first_bad = torch.where(new, torch.full_like(self.first_bad, step), self.first_bad)
        self.bad_loss = torch.where(new, loss.detach().float().reshape(-1)[0], self.bad_loss)
        self.calls += 1
        if self.calls % self.every == 0:
            self.close()

    def close(self) -> None:
        step = int(self.first_bad)
        if step >= 0:
            check_finite(self.bad_loss, self.stage, step)


class Precision:
    """The number format of training, chosen by the device (the same code runs everywhere).

    * CPU: float32, no autocast.
    * A GPU with bfloat16 (A100, H100): bf16 autocast; bf16 has float32's range, no loss scaling.
    * A GPU without it (the T4 of free Colab): fp16 autocast with loss scaling
      (``torch.amp.GradScaler``), since fp16 gradients underflow without it.

    ``asked`` (``fp16``, ``bf16`` or ``fp32``; from ``RLHF_PRECISION``, see
    :func:`rlhf_minimal.device.run_settings`) overrides the choice on a GPU: on an H100, ``fp16``
    trains with the T4's number format, which is how the course checks the Colab path.

    A training step reads, in every stage::

        with precision.autocast():
            loss = ...                                       # the forward pass and the loss
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)                             # loss.backward(), scaled in fp16
        precision.clip_grad_norm(model, optimizer, max_norm) # unscaled first in fp16
        precision.step(optimizer)                            # optimizer.step(); fp16 skips inf steps
    """

    CHOICES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, device, asked: str = ""):
        self.device = torch.device(device)
        if asked and asked not in self.CHOICES:
            raise ValueError(f"RLHF_PRECISION={asked!r} is not a precision; use one of "
                             f"{', '.join(self.CHOICES)} or leave it unset to let the device choose")
        if self.device.type != "cuda":
            if asked not in ("", "fp32"):
                raise ValueError(f"RLHF_PRECISION={asked} needs a CUDA GPU; on the CPU training is "
                                 "fp32 (unset RLHF_PRECISION)")
            self.dtype = None
        elif asked:
            if asked == "bf16" and not torch.cuda.is_bf16_supported():
                raise ValueError("RLHF_PRECISION=bf16, but this GPU has no bfloat16; use fp16")
            self.dtype = self.CHOICES[asked]
        elif torch.cuda.is_bf16_supported():
            self.dtype = torch.bfloat16
        else:
            self.dtype = torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + loss scaling"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        # no cache of cast weights: a CUDA graph may not keep tensors made while recording
        return torch.autocast("cuda", dtype=self.dtype, cache_enabled=False)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``; in fp16 the loss is scaled up first, so small gradients survive."""
        self.scaler.scale(loss).backward()

    def clip_grad_norm(self, model: torch.nn.Module, optimizer, max_norm: float) -> None:
        """Clip the gradient norm of ``model``'s parameters to ``max_norm`` (unscaled first in fp16)."""
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def step(self, optimizer) -> None:
        """``optimizer.step()``; in fp16 a step with infinite gradients is skipped and the scale lowered."""
        self.scaler.step(optimizer)
        self.scaler.update()


def progress(iterable=None, total=None, desc: str = ""):
    """A progress bar (silenced by TQDM_DISABLE=1, as in the test suite)."""
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)

"""What every training stage shares: seeding, the optimizer, the learning-rate schedule,
the NaN/inf guard and progress bars."""
from __future__ import annotations

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
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas)


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


def progress(iterable=None, total=None, desc: str = ""):
    """A progress bar (silenced by TQDM_DISABLE=1, as in the test suite)."""
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)

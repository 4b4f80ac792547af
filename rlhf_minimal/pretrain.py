"""Stage 0: pretraining the base model on the world's plain-text corpus (eq-lm-loss).

The corpus is tokenized once, documents joined by EOS into one long tensor, and each step trains
on random windows of ``window`` tokens: plain next-token prediction, no instructions.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .cache import cached_model, read_json, save_checkpoint
from .device import RunSettings, pick_device, run_settings
from .graphs import GraphedStep, graph_training, make_graph_optimizer
from .model import GPT, GPTConfig, lm_loss
from .scale import current_scale, preset
from .tokenizer import Tokenizer
from .train import FiniteGuard, Precision, cosine_lr, make_optimizer, progress, set_lr, set_seed
from .world import World, WorldConfig, make_world


def network_size(scale: str, size: str) -> dict:
    """``n_layer``, ``n_head`` and ``d_model`` of ``size`` (small, medium or large) at ``scale``."""
    sizes = preset(scale, "sizes")
    if size not in sizes:
        raise ValueError(f"unknown model size {size!r}: choose one of {', '.join(sizes)}")
    return dict(zip(("n_layer", "n_head", "d_model"), sizes[size]))


@dataclass(frozen=True)
class PretrainConfig:
    n_layer: int = 3
    n_head: int = 4
    d_model: int = 96
    max_len: int = 96        # the model's context
    window: int = 64         # tokens per training sequence (shorter is faster; documents are short)
    steps: int = 500
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100
    val_share: float = 0.05
    eval_every: int = 250

    @staticmethod
    def preset(scale: str, size: str = "medium") -> "PretrainConfig":
        """The scale's configuration; ``size`` swaps in a smaller or larger network (chapter 6's
        size sweep) and leaves data, steps and learning rate alone."""
        return PretrainConfig(**{**preset(scale, "pretrain"), **network_size(scale, size)})

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size, self.n_layer, self.n_head, self.d_model, self.max_len)


def corpus_tensor(world: World, tokenizer: Tokenizer, docs: list[str]) -> torch.Tensor:
    ids = []
    for doc in docs:
        ids += tokenizer.encode(doc, add_eos=True)
    return torch.tensor(ids, dtype=torch.long)


def _windows(data: torch.Tensor, batch_size: int, length: int, generator: torch.Generator):
    starts = torch.randint(0, data.numel() - length - 1, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(length + 1)[None, :]
    chunk = data[index.to(data.device)]
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def _val_loss(model, data, cfg, generator, batches: int = 8) -> float:
    model.eval()
    losses = []
    for _ in range(batches):
        x, y = _windows(data, cfg.batch_size, cfg.window, generator)
        losses.append(lm_loss(model(x.to(data.device)), y.to(data.device)).item())
    model.train()
    return sum(losses) / len(losses)


def lm_training_step(model: GPT, optimizer, precision: Precision, graphs: bool = False,
                     max_grad_norm: float = 1.0, loss_fn=lm_loss):
    """One step of next-token training (eq-lm-loss) as a function ``step(inputs, targets) -> loss``:
    forward, loss, backward, clipping, optimizer step. SFT trains with the same step, its prompt
    tokens' targets set to -100 (eq-sft-loss). ``loss_fn(outputs, targets)`` (default
    :func:`~rlhf_minimal.model.lm_loss`) lets the benchmark time other losses the same way.

    ``graphs=True`` replays the step from CUDA graphs (:class:`rlhf_minimal.graphs.GraphedStep`),
    with a recordable copy of the optimizer. Returns ``(step, optimizer)``: set the learning rate
    on the optimizer returned (:func:`rlhf_minimal.train.set_lr`)."""
    if graphs:
        optimizer = make_graph_optimizer(optimizer)

    def step(inputs, targets):
        with precision.autocast():
            loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.clip_grad_norm(model, optimizer, max_grad_norm)
        precision.step(optimizer)
        return loss.detach()
    return (GraphedStep(step, precision.device) if graphs else step), optimizer


def pretrain(world: World, tokenizer: Tokenizer, cfg: PretrainConfig, seed: int = 0,
             device=None, settings: RunSettings | None = None) -> tuple[GPT, dict]:
    """Train a fresh GPT on the world's corpus; returns the model and its log. ``settings``
    (precision, CUDA graphs) default to the device's own (:func:`rlhf_minimal.device.run_settings`)."""
    settings = settings or RunSettings(pick_device(device))
    device = settings.device
    generator = set_seed(seed)
    n_val = max(1, int(len(world.corpus) * cfg.val_share))
    train_data = corpus_tensor(world, tokenizer, world.corpus[n_val:]).to(device)
    val_data = corpus_tensor(world, tokenizer, world.corpus[:n_val]).to(device)
    model = GPT(cfg.model_config(tokenizer.vocab_size)).to(device)
    precision, guard = Precision(device, settings.precision), FiniteGuard("pretraining", device)
    train_step, optimizer = lm_training_step(model, make_optimizer(model, cfg.lr), precision,
                                             graph_training(settings, precision))
    log = {"step": [], "train_loss": [], "val_step": [], "val_loss": [],
           "parameters": model.num_parameters(), "train_tokens": train_data.numel()}
    logged = []
    start = time.time()
    bar = progress(range(cfg.steps), desc="pretraining")
    for step in bar:
        x, y = _windows(train_data, cfg.batch_size, cfg.window, generator)
        set_lr(optimizer, cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup))
        loss = train_step(x, y)
        guard(loss, step)
        if step % 10 == 0 or step == cfg.steps - 1:
            log["step"].append(step)
            logged.append(loss)  # read back at the end: no host sync inside the loop
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            log["val_step"].append(step)
            log["val_loss"].append(round(_val_loss(model, val_data, cfg, generator), 4))
            bar.set_postfix(val_loss=log["val_loss"][-1])
    guard.close()
    log["train_loss"] = [round(v, 4) for v in torch.stack(logged).float().tolist()]
    log["seconds"] = round(time.time() - start, 1)
    log["precision"] = precision.name
    log["tokens_seen"] = cfg.steps * cfg.batch_size * cfg.window
    return model.eval(), log


def base_model(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
               size: str = "medium"):
    """The pretrained base model for ``scale`` and ``seed``, from the cache or trained now.
    ``size`` (small, medium, large) picks the network; medium is the scale's own.

    Returns ``(world, tokenizer, model, log)``.
    """
    scale = current_scale(scale)
    world_cfg, cfg = WorldConfig.preset(scale, seed), PretrainConfig.preset(scale, size)
    world = make_world(config=world_cfg)
    tokenizer = Tokenizer.for_world(world)
    stage_cfg = {"world": asdict(world_cfg), "pretrain": asdict(cfg), "seed": seed}

    settings = run_settings(device)

    def build(folder):
        model, log = pretrain(world, tokenizer, cfg, seed, settings=settings)
        save_checkpoint(folder, model, {"stage": stage_cfg}, log=log)
        tokenizer.save(folder / "tokenizer.json")

    model, folder = cached_model("base", stage_cfg, build, settings, fresh)
    return world, tokenizer, model, read_json(folder, "log")

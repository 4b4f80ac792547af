"""A small GPT: a pre-LN causal transformer in plain PyTorch, with a KV cache for sampling.

Simplifications, stated up front: learned absolute positions, no dropout, GELU MLP, no weight
tying (the head is swapped for a scalar head by the reward model and the value function).

Padding. Training batches are right-padded; generation batches are left-padded. Positions come
from the attention mask (``position = number of real tokens before it``), so a left-padded
prompt gets the same positions, and the same logits, as the unpadded one.

The language-modelling loss of chapter 1 (eq-lm-loss) is ``lm_loss``. Sampling from the model
(``generate``) is in :mod:`rlhf_minimal.sampling`; CUDA graphs of the decoding step in
:mod:`rlhf_minimal.graphs`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    max_len: int = 96
    head: str = "lm"         # "lm": logits over the vocabulary; "scalar": one number per position

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x, allowed, cache, layer):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x, allowed, cache, layer):
        x = x + self.attn(self.ln1(x), allowed, cache, layer)
        return x + self.mlp(self.ln2(x))


def scalar_head(d_model: int) -> nn.Linear:
    """A linear head to one number, weights N(0, 1/sqrt(d+1)) and zero bias."""
    head = nn.Linear(d_model, 1)
    nn.init.normal_(head.weight, std=1.0 / math.sqrt(d_model + 1))
    nn.init.zeros_(head.bias)
    return head


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model ({cfg.d_model}) must be divisible by n_head ({cfg.n_head})")
        if cfg.head not in ("lm", "scalar"):
            raise ValueError(f"head must be 'lm' or 'scalar', got {cfg.head!r}")
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.head == "lm":
            self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
            nn.init.normal_(self.head.weight, std=0.02)
        else:
            self.head = scalar_head(cfg.d_model)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids, attention_mask=None, cache=None, positions=None,
                return_hidden: bool = False):
        """Logits ``[B, T, vocab]`` (or scalars ``[B, T]`` with the scalar head).

        ``attention_mask`` ``[B, T_total]`` is 1 on real tokens and 0 on padding; ``T_total``
        includes tokens already in ``cache``. ``cache`` is a :class:`KVCache` or None.
        """
        past, total, attention_mask, positions = forward_inputs(
            input_ids, attention_mask, cache, positions, self.config.max_len)
        query_index = torch.arange(past, total, device=input_ids.device)[:, None]
        key_index = torch.arange(total, device=input_ids.device)[None, :]
        # Each query sees earlier real tokens, and always itself (so a pad row is never all -inf).
        allowed = (key_index <= query_index)[None] & attention_mask.bool()[:, None, :]
        allowed = (allowed | (key_index == query_index)[None])[:, None]
        x = self.tok_emb(input_ids) + self.pos_emb(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, cache, i)
        if cache is not None:
            cache.length = total
        hidden = self.ln_f(x)
        out = self.head(hidden)
        if self.config.head == "scalar":
            out = out.squeeze(-1)
        return (out, hidden) if return_hidden else out

    def with_scalar_head(self) -> "GPT":
        """A copy of this model whose unembedding is replaced by a fresh scalar head."""
        cfg = GPTConfig(**{**self.config.to_dict(), "head": "scalar"})
        model = GPT(cfg).to(next(self.parameters()).device)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}
        model.load_state_dict(state, strict=False)
        return model


def forward_inputs(input_ids, attention_mask, cache, positions, max_len: int):
    """What starts a forward pass of ``T`` new tokens: ``(past, total, attention_mask, positions)``
    with ``past`` the tokens already in ``cache``, ``total = past + T`` (refused beyond ``max_len``),
    the mask over all ``total`` tokens (all ones when None) and the new tokens' positions."""
    B, T = input_ids.shape
    past = cache.length if cache is not None else 0
    total = past + T
    if total > max_len:
        raise ValueError(f"sequence of {total} tokens is longer than the model's context "
                         f"({max_len}); shorten the input or use a larger max_len")
    if attention_mask is None:
        attention_mask = torch.ones(B, total, dtype=torch.long, device=input_ids.device)
    if positions is None:
        positions = position_ids(attention_mask)[:, past:]
    return past, total, attention_mask, positions


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Our positions: the number of real tokens before each token (0 on left padding), so a
    sequence's logits do not depend on how much padding it got."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class KVCache:
    """Keys and values of every layer for the tokens seen so far.

    With ``capacity`` (the most tokens the sequence will hold), each layer's keys and values live
    in buffers of that length, allocated at the first call and written in place; without it they
    grow by concatenation, which copies the whole cache at every generated token. Both return the
    same tensors to attention, so both give the same numbers.
    """

    def __init__(self, n_layer: int, capacity: int | None = None):
        self.layers = [[None, None] for _ in range(n_layer)]
        self.length = 0  # tokens stored; the model advances it after all layers have run
        self.capacity = capacity

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this call's keys and values ``[B, heads, T, head_dim]`` of ``layer`` after the
        ones already there; return all of them."""
        entry = self.layers[layer]
        if self.capacity is None:
            if entry[0] is not None:
                k, v = torch.cat([entry[0], k], dim=2), torch.cat([entry[1], v], dim=2)
            entry[0], entry[1] = k, v
            return k, v
        end = self.length + k.size(2)
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} tokens; this call would make {end}")
        if entry[0] is None:
            shape = (k.size(0), k.size(1), self.capacity, k.size(3))
            entry[0], entry[1] = k.new_zeros(shape), v.new_zeros(shape)
        entry[0][:, :, self.length:end] = k
        entry[1][:, :, self.length:end] = v
        return entry[0][:, :, :end], entry[1][:, :, :end]


def lm_loss(logits, targets, ignore_index: int = -100):
    """Mean next-token cross-entropy over positions whose target is not ``ignore_index``
    (eq-lm-loss; with prompt tokens ignored it is the SFT loss, eq-sft-loss)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=ignore_index)

"""A small GPT: a pre-LN causal transformer in plain PyTorch, with a KV cache for sampling.

Simplifications, stated up front: learned absolute positions, no dropout, GELU MLP, no weight
tying (the head is swapped for a scalar head by the reward model and the value function).

Padding. Training batches are right-padded; generation batches are left-padded. Positions come
from the attention mask (``position = number of real tokens before it``), so a left-padded
prompt gets the same positions, and the same logits, as the unpadded one.

The language-modelling loss of chapter 1 (eq-lm-loss) is ``lm_loss``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# On recent GPUs torch tries cuDNN first for half-precision attention with a mask, and cuDNN builds
# an execution plan for every new input shape (a tenth of a second to a second each). Our batches
# change shape at almost every step: on an H200 the reward model's 67 steps took 7.5 s, where a
# step of a repeated shape takes 13 ms. The other attention kernels need no plan. (Process-wide;
# it changes nothing on the CPU.)
torch.backends.cuda.enable_cudnn_sdp(False)


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
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        total = past + T
        if total > self.config.max_len:
            raise ValueError(f"sequence of {total} tokens is longer than the model's context "
                             f"({self.config.max_len}); shorten the input or use a larger max_len")
        if attention_mask is None:
            attention_mask = torch.ones(B, total, dtype=torch.long, device=input_ids.device)
        if positions is None:
            positions = position_ids(attention_mask)[:, past:]
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

    def decode_step(self, token, position, key_mask, slot, cache: "KVCache"):
        """Logits ``[B, vocab]`` for one new token per row, attending over the whole cache.

        ``token`` and ``position`` are ``[B, 1]``; ``key_mask`` ``[B, capacity]`` is 1 on the cache
        slots a row may attend to; ``slot`` (a one-element long tensor) is where this token's keys
        and values go, and the token always attends to itself. Every shape is fixed by the cache's
        capacity and nothing is read back to the host, so a CUDA graph can record this call once
        and replay it for every token (:class:`rlhf_minimal.graphs.GraphedDecoder`). It computes
        what ``forward`` computes for the last token, over masked-out slots that get zero weight.
        """
        slots = torch.arange(cache.capacity, device=token.device)
        allowed = (key_mask.bool() | (slots == slot)[None])[:, None, None, :]
        x = self.tok_emb(token) + self.pos_emb(position)
        cache.write_at = slot
        try:
            for i, block in enumerate(self.blocks):
                x = block(x, allowed, cache, i)
        finally:
            cache.write_at = None
        return self.head(self.ln_f(x))[:, -1]

    def with_scalar_head(self) -> "GPT":
        """A copy of this model whose unembedding is replaced by a fresh scalar head."""
        cfg = GPTConfig(**{**self.config.to_dict(), "head": "scalar"})
        model = GPT(cfg).to(next(self.parameters()).device)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}
        model.load_state_dict(state, strict=False)
        return model


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
        self.write_at = None  # GPT.decode_step's slot (a device tensor), see there

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this call's keys and values ``[B, heads, T, head_dim]`` of ``layer`` after the
        ones already there; return all of them.

        During :meth:`GPT.decode_step` (``write_at`` set) the one new key and value go to slot
        ``write_at`` and the whole buffers come back, unwritten slots included: shapes and
        addresses stay the same at every token, which is what a CUDA graph needs."""
        entry = self.layers[layer]
        if self.write_at is not None:
            entry[0].index_copy_(2, self.write_at, k)
            entry[1].index_copy_(2, self.write_at, v)
            return entry[0], entry[1]
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


def filter_logits(logits, top_k: int | None = None, top_p: float | None = None):
    """Set to -inf every logit outside the top-k and outside the smallest set of tokens whose
    probability adds up to top-p (nucleus sampling)."""
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def left_pad(sequences: list[list[int]], pad_id: int, device=None, width: int | None = None):
    """Left-pad token lists into ``(ids [B, T], mask [B, T])``; ``T`` is the longest list, or
    ``width`` when given (it must be at least that)."""
    longest = max(len(s) for s in sequences)
    if width is not None and width < longest:
        raise ValueError(f"width {width} is shorter than the longest sequence ({longest} tokens)")
    width = width or longest
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             min_new_tokens: int = 0, graphs: bool | None = None, prompt_width: int | None = None):
    """Sample continuations of a batch of prompts (token lists of any lengths).

    Prompts are left-padded; sampling stops for a row at EOS (kept) and fills the rest with PAD.
    ``temperature=0`` is greedy; EOS is blocked for the first ``min_new_tokens`` steps (so a
    response is never empty when it is 1). Returns ``(prompt_ids [B, P], prompt_mask, response [B, N])``
    with ``N <= max_new_tokens``. ``use_cache=False`` recomputes the whole sequence every step
    (slow; the tests use it to check the cache). ``graphs`` (default: ``$RLHF_CUDA_GRAPHS`` on a
    CUDA device) replays each token's forward pass from a CUDA graph
    (:class:`rlhf_minimal.graphs.GraphedDecoder`); the samples are the same up to rounding.
    ``prompt_width`` left-pads every batch to the same width (the same numbers, since positions
    ignore padding), so that one recorded graph serves batches of different prompt lengths.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    longest = max(prompt_width or 0, max(len(p) for p in prompts))
    if longest + max_new_tokens > model.config.max_len:
        raise ValueError(f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} "
                         f"exceeds the model's context of {model.config.max_len}: shorten the "
                         "prompt or lower max_new_tokens")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids, mask = left_pad(prompts, pad_id, device, prompt_width)
    B, P = ids.shape
    # buffers of the final length, written in place: no copy of the cache or the mask per token
    cache = KVCache(model.config.n_layer, capacity=P + max_new_tokens) if use_cache else None
    decoder = None
    if use_cache and max_new_tokens > 1:
        from .graphs import graphed_decoder, graphs_requested

        if graphs or (graphs is None and graphs_requested(device)):
            decoder = graphed_decoder(model, B, P + max_new_tokens)
            cache = decoder.start()
    full_mask = torch.zeros(B, P + max_new_tokens, dtype=mask.dtype, device=device)
    full_mask[:, :P] = mask
    seq, step_input = ids, ids
    done = torch.zeros(B, dtype=torch.bool, device=device)
    check_every = 1 if device.type == "cpu" else 8
    out = []
    for step in range(max_new_tokens):
        if decoder is not None and step > 0:
            slot = P + step - 1  # where the newest token goes; its position counts real tokens
            position = position_ids(full_mask[:, :slot + 1])[:, -1:]
            logits = decoder(step_input, position, full_mask, slot).float()
        else:
            logits = model(step_input if use_cache else seq, full_mask[:, :P + step], cache)[:, -1, :].float()
        if step < min_new_tokens:
            logits[:, eos_id] = float("-inf")
        if temperature == 0:
            token = logits.argmax(-1)
        else:
            logits = filter_logits(logits / temperature, top_k, top_p)
            # Gumbel-max: argmax(logits + Gumbel noise) is a sample from softmax(logits)
            if generator is not None and generator.device != logits.device:
                # same numbers as on the generator's own device, at the cost of a copy per token
                uniform = torch.rand(logits.shape, generator=generator, device=generator.device).to(logits.device)
            else:
                uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
            token = (logits - torch.log(-torch.log(uniform.clamp_min(1e-20)))).argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        out.append(token)
        done = done | (token == eos_id)
        full_mask[:, P + step] = ~done | (token == eos_id)
        step_input = token[:, None]
        if not use_cache:
            seq = torch.cat([seq, step_input], dim=1)
        # asking "all done?" makes the host wait for the device: on a GPU ask every 8 tokens
        if (step % check_every == check_every - 1) and bool(done.all()):
            break
    model.train(was_training)
    return ids, mask, torch.stack(out, dim=1)


"""Sampling from the model: left padding, top-k/top-p filtering and ``generate`` with the KV cache.

Prompts of different lengths are left-padded so that every row's next token sits in the last
column; positions come from the attention mask (:func:`rlhf_minimal.model.position_ids`), so the
padding changes no number. Every token is drawn with the Gumbel-max trick from the generator the
caller passes, which is what makes a seed give the same samples on every run.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import GPT, KVCache, position_ids


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


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log pi(token) under ``softmax(logits / temperature)``, the distribution sampled from."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1)


def sample_token(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits [B, vocab]``: the argmax when ``temperature`` is 0, else a
    sample from ``softmax(filter_logits(logits / temperature))``.

    Gumbel-max: ``argmax(logits + Gumbel noise)`` is a sample from ``softmax(logits)``. The noise
    is drawn on the generator's device, so a seed gives the same tokens wherever the model is."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits / temperature, top_k, top_p)
    if generator is not None and generator.device != logits.device:
        # same numbers as on the generator's own device, at the cost of a copy per token
        uniform = torch.rand(logits.shape, generator=generator, device=generator.device).to(logits.device)
    else:
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
    return (logits - torch.log(-torch.log(uniform.clamp_min(1e-20)))).argmax(-1)


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             min_new_tokens: int = 0, graphs: bool = False, prompt_width: int | None = None):
    """Sample continuations of a batch of prompts (token lists of any lengths).

    Prompts are left-padded; sampling stops for a row at EOS (kept) and fills the rest with PAD.
    ``temperature=0`` is greedy; EOS is blocked for the first ``min_new_tokens`` steps (so a
    response is never empty when it is 1). Returns ``(prompt_ids [B, P], prompt_mask, response [B, N])``
    with ``N <= max_new_tokens``. ``use_cache=False`` recomputes the whole sequence every step
    (slow; the tests use it to check the cache). ``graphs=True`` (on a CUDA device) replays each
    token's forward pass from a CUDA graph (:class:`rlhf_minimal.graphs.GraphedDecoder`); the
    samples are the same up to rounding. ``prompt_width`` left-pads every batch to the same width
    (the same numbers, since positions ignore padding), so one recorded graph serves all batches.
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
    if graphs and use_cache and max_new_tokens > 1:
        from .graphs import graphed_decoder

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
        token = sample_token(logits, temperature, top_k, top_p, generator)
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

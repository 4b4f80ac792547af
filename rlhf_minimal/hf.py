"""Run the course's SFT, reward-model and PPO code on any Hugging Face causal language model.

The stages call a model and a tokenizer through a small interface, the one
:class:`~rlhf_minimal.model.GPT` and :class:`~rlhf_minimal.tokenizer.Tokenizer` have:

* model: ``model(input_ids, attention_mask=None, cache=None, positions=None, return_hidden=False)``
  returns logits (or scalars, for a reward model) at every position; ``model.config`` has
  ``vocab_size``, ``n_layer``, ``d_model``, ``max_len`` and ``head``; ``with_scalar_head()``
  gives a reward-model copy; the cache is a :class:`~rlhf_minimal.model.KVCache`.
* tokenizer: ``encode(text, add_eos=False)``, ``decode(ids)`` (PAD and EOS left out),
  ``eos_id``, ``pad_id``, ``vocab_size``.

:class:`HFCausalLM` and :class:`HFTokenizer` give a ``transformers`` model and tokenizer that
interface, so ``train_sft``, ``train_reward_model``, ``train_ppo`` and ``generate`` run on
SmolLM2, GPT-2 or a tiny model built from a configuration, unchanged. Two conventions are made
explicit here:

* **PAD**: a tokenizer without a pad token (GPT-2, Llama) gets EOS as its pad token. The stages
  never tell real tokens from padding by their id (masks come from sequence lengths), so this is
  safe.
* **Positions and left padding**: generation left-pads prompts, and positions are counted over
  real tokens only (``attention_mask.cumsum(-1) - 1``), as in our GPT, so a prompt's logits do not
  depend on how much padding it got.

The whole network is trained (no adapters, no quantisation): fine for models up to a few hundred
million parameters on one GPU.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .model import forward_inputs, scalar_head


@dataclass
class HFConfig:
    """The fields of :class:`~rlhf_minimal.model.GPTConfig` the stages read."""

    vocab_size: int
    n_layer: int
    d_model: int
    max_len: int
    head: str = "lm"
    name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _first_attribute(config, names, what):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(f"cannot find the {what} in the model's configuration (looked for {', '.join(names)})")


class HFTokenizer:
    """Our tokenizer interface over a ``transformers`` tokenizer.

    ``encode`` adds no special tokens (BOS included), as ours; ``add_eos=True`` appends EOS.
    A tokenizer without a pad token gets EOS as its pad token (say so with ``pad_from_eos``).
    """

    def __init__(self, hf_tokenizer):
        if hf_tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token: set tokenizer.eos_token (every response "
                             "must be able to end) before wrapping it")
        self.pad_from_eos = hf_tokenizer.pad_token_id is None
        if self.pad_from_eos:
            hf_tokenizer.pad_token = hf_tokenizer.eos_token
        self.hf = hf_tokenizer
        self.eos_id = int(hf_tokenizer.eos_token_id)
        self.pad_id = int(hf_tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        ids = self.hf(text, add_special_tokens=False)["input_ids"]
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special:
            ids = [i for i in ids if i not in (self.pad_id, self.eos_id)]
        return self.hf.decode(ids, skip_special_tokens=skip_special)


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM behind our GPT's interface (chapter 7's interop section).

    ``head="lm"`` returns the model's logits; :meth:`with_scalar_head` makes the reward-model
    version: the same network with the unembedding replaced by a scalar head initialised
    N(0, 1/sqrt(d+1)), as our reward model is.
    """

    def __init__(self, hf_model, max_len: int | None = None, head: str = "lm"):
        super().__init__()
        cfg = hf_model.config
        if head not in ("lm", "scalar"):
            raise ValueError(f"head must be 'lm' or 'scalar', got {head!r}")
        self.hf = hf_model
        limit = _first_attribute(cfg, ("max_position_embeddings", "n_positions", "n_ctx"), "context length")
        self.config = HFConfig(
            vocab_size=hf_model.get_output_embeddings().weight.size(0),
            n_layer=_first_attribute(cfg, ("num_hidden_layers", "n_layer"), "number of layers"),
            d_model=_first_attribute(cfg, ("hidden_size", "n_embd", "d_model"), "hidden size"),
            max_len=min(max_len or limit, limit), head=head,
            name=getattr(cfg, "_name_or_path", "") or cfg.model_type)
        if head == "scalar":
            self.head = scalar_head(self.config.d_model)
        # newer transformers call the key-value cache argument ``cache``, older ``past_key_values``
        parameters = inspect.signature(hf_model.base_model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids, attention_mask=None, cache=None, positions=None,
                return_hidden: bool = False):
        past, total, attention_mask, positions = forward_inputs(
            input_ids, attention_mask, cache, positions, self.config.max_len)
        past_kv = getattr(cache, "hf", None) if cache is not None else None
        out = self.hf.base_model(input_ids=input_ids, attention_mask=attention_mask.long(),
                                 position_ids=positions, use_cache=cache is not None,
                                 **{self._cache_argument: past_kv})
        hidden = out.last_hidden_state
        if cache is not None:
            cache.hf = out["cache"] if "cache" in out else out["past_key_values"]
            cache.length = total
        if self.config.head == "scalar":
            result = self.head(hidden).squeeze(-1)
        else:
            result = self.hf.get_output_embeddings()(hidden)
        return (result, hidden) if return_hidden else result

    def with_scalar_head(self) -> "HFCausalLM":
        model = HFCausalLM(copy.deepcopy(self.hf), self.config.max_len, head="scalar")
        return model.to(next(self.parameters()).device)


def tiny_causal_lm(vocab_size: int, kind: str = "llama", n_layer: int = 2, d_model: int = 64,
                   n_head: int = 4, max_len: int = 96, seed: int = 0, eos_id: int = 1, pad_id=None):
    """A small randomly initialised ``transformers`` causal LM built from a configuration (no
    download): ``kind`` is ``"llama"`` (as SmolLM2) or ``"gpt2"``. The tests and the offline path
    of lab 7 use it."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=4 * d_model,
                             num_hidden_layers=n_layer, num_attention_heads=n_head,
                             num_key_value_heads=n_head, max_position_embeddings=max_len,
                             eos_token_id=eos_id, bos_token_id=eos_id, pad_token_id=pad_id,
                             tie_word_embeddings=True)
        return LlamaForCausalLM(config)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=d_model, n_layer=n_layer, n_head=n_head,
                            n_positions=max_len, eos_token_id=eos_id, bos_token_id=eos_id,
                            pad_token_id=pad_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        return GPT2LMHeadModel(config)
    raise ValueError(f"kind must be 'llama' or 'gpt2', got {kind!r}")

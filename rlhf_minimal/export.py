"""Export the course's models and tokenizer to the Hugging Face ``transformers`` format.

What is exported
----------------
* :func:`export_tokenizer`: the word-level tokenizer as a ``PreTrainedTokenizerFast`` (a
  ``tokenizers`` WordLevel model with our vocabulary and ids; ``<pad>`` = 0 is the pad token and
  ``<eos>`` = 1 the EOS token). The pre-tokenizer splits text with the same regular expression as
  :class:`~rlhf_minimal.tokenizer.Tokenizer` (``"\\n"`` is a token of its own, spaces separate
  the others), so ids are the same as ``Tokenizer.encode``. The decoder joins tokens with single
  spaces and puts none around ``"\\n"``, so ``decode`` gives back ``Tokenizer.decode``'s text.
  No EOS is appended on encoding (as ``Tokenizer.encode`` with ``add_eos=False``). There is no
  unknown-word token: encoding a word outside the vocabulary raises an error instead of
  replacing it (``tokenizers`` words it "WordLevel error: Missing [UNK] token from the
  vocabulary"; our tokenizer's :class:`~rlhf_minimal.tokenizer.UnknownWordError` names the
  words). One more difference: the HF tokenizer reads ``"<pad>"`` and ``"<eos>"`` written in the
  text as the special tokens, where ours refuses them.
* :func:`export_causal_lm`: a language-model :class:`~rlhf_minimal.model.GPT` as a
  ``GPT2LMHeadModel`` (loadable by ``AutoModelForCausalLM``), with the tokenizer in the same
  folder. The logits are the same as ours (to float rounding) when the HF model gets the
  positions ours uses: ``position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)``.
  Without padding (or with right padding) the default positions are the same; with left padding
  pass ``position_ids`` (``generate`` computes them from the attention mask by itself).
* :func:`export_reward_model`: a :class:`~rlhf_minimal.reward.RewardModel` as a
  ``GPT2ForSequenceClassification`` with one label (loadable by
  ``AutoModelForSequenceClassification``), with the tokenizer in the same folder;
  :func:`normalised_reward` turns its output into our normalised reward.
* :func:`load_exported` loads either kind back with its tokenizer.

Weight mapping (ours -> GPT-2)
------------------------------
GPT-2 stores its linear layers as ``Conv1D`` modules whose weight is ``[in, out]``, the
transpose of ``nn.Linear``'s ``[out, in]``; the four rows marked *T* are transposed::

    tok_emb.weight              -> transformer.wte.weight
    pos_emb.weight              -> transformer.wpe.weight
    blocks.{i}.ln1.{weight,bias}    -> transformer.h.{i}.ln_1.{weight,bias}
    blocks.{i}.attn.qkv.weight  -> transformer.h.{i}.attn.c_attn.weight   (T; q, k, v in order)
    blocks.{i}.attn.qkv.bias    -> transformer.h.{i}.attn.c_attn.bias
    blocks.{i}.attn.proj.weight -> transformer.h.{i}.attn.c_proj.weight   (T)
    blocks.{i}.attn.proj.bias   -> transformer.h.{i}.attn.c_proj.bias
    blocks.{i}.ln2.{weight,bias}    -> transformer.h.{i}.ln_2.{weight,bias}
    blocks.{i}.mlp.0.weight     -> transformer.h.{i}.mlp.c_fc.weight      (T)
    blocks.{i}.mlp.0.bias       -> transformer.h.{i}.mlp.c_fc.bias
    blocks.{i}.mlp.2.weight     -> transformer.h.{i}.mlp.c_proj.weight    (T)
    blocks.{i}.mlp.2.bias       -> transformer.h.{i}.mlp.c_proj.bias
    ln_f.{weight,bias}          -> transformer.ln_f.{weight,bias}
    head.weight  (language model)  -> lm_head.weight    (not tied to wte)
    head.weight  (scalar head)     -> score.weight
    head.bias    (scalar head)     -> no place in GPT-2: see below

The configuration matches ours: ``activation_function="gelu"`` (the exact erf GELU of
``nn.GELU()``), ``layer_norm_epsilon=1e-5``, ``n_positions=max_len``, attention scaled by
``1/sqrt(head dim)`` only, every dropout 0, no weight tying.

The reward head's bias
----------------------
``GPT2ForSequenceClassification``'s ``score`` layer has no bias, ours has one, ``b``. The HF
model therefore outputs ``hf = raw - b``, and the saved configuration carries the normalisation
adjusted for it, ``config.rlhf_minimal = {"shift": shift - b, "scale": scale, "head_bias": b,
"our_shift": shift}``, so that ``(hf - config.rlhf_minimal["shift"]) / scale`` equals our
``RewardModel.score`` exactly (:func:`normalised_reward` does this). The differences between
rewards, which is all the pairwise loss sees, are the same with or without ``b``.

HF reads the score at the last token that is not ``config.pad_token_id`` (our ``<pad>``), for
left and right padding alike; our reward is read at the last real token of ``prompt + response +
EOS``. Real tokens are never ``<pad>``, so the two agree: encode the text, append EOS (see
:func:`reward_inputs`), and pass ``position_ids`` when the batch is left-padded.

Files
-----
Weights are written with ``save_pretrained`` as ``model.safetensors`` (never pickles), next to
``config.json``, ``generation_config.json`` and the tokenizer's ``tokenizer.json`` and
``tokenizer_config.json``. Everything loads offline with ``from_pretrained(path)``.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .model import GPT, position_ids  # noqa: F401  (position_ids: part of this module's interface)
from .reward import RewardModel
from .tokenizer import _TOKEN, EOS, PAD, Tokenizer

_LINEAR_TO_CONV1D = {  # our name in a block -> GPT-2's, all transposed
    "attn.qkv": "attn.c_attn",
    "attn.proj": "attn.c_proj",
    "mlp.0": "mlp.c_fc",
    "mlp.2": "mlp.c_proj",
}
_LAYER_NORMS = {"ln1": "ln_1", "ln2": "ln_2"}


# ----------------------------------------------------------------------------- tokenizer

def _tokenizers_object(tokenizer: Tokenizer):
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as RustTokenizer

    vocab = {word: i for i, word in enumerate(tokenizer.itos)}
    # No unknown-word token: "<unk>" is not in the vocabulary, so an unknown word is an error
    # (as with our tokenizer) rather than silently replaced.
    fast = RustTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # The regex matches the tokens; invert=True makes the spaces between them the delimiters,
    # which "removed" drops: exactly ``_TOKEN.findall(text)``.
    fast.pre_tokenizer = pre_tokenizers.Split(Regex(_TOKEN.pattern), behavior="removed", invert=True)
    # Join with single spaces (WordPiece without "##" continuations or clean-up is a plain join),
    # then drop the spaces on either side of each "\n", as Tokenizer.decode does.
    fast.decoder = decoders.Sequence([
        decoders.WordPiece(prefix="##", cleanup=False),
        decoders.Fuse(),
        decoders.Replace(Regex(" ?\n ?"), "\n"),
    ])
    return fast


def export_tokenizer(tokenizer: Tokenizer, path: str | Path | None = None,
                     padding_side: str = "right", model_max_length: int | None = None):
    """Our tokenizer as a ``transformers.PreTrainedTokenizerFast``, saved to ``path`` (when given)
    with ``save_pretrained`` so that ``AutoTokenizer.from_pretrained(path)`` loads it offline.

    Same vocabulary and ids; ``<pad>`` is the pad token and ``<eos>`` the EOS token;
    ``padding_side`` is ``"right"`` (training batches) or ``"left"`` (generation batches).
    """
    from transformers import PreTrainedTokenizerFast

    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if tokenizer.itos[tokenizer.pad_id] != PAD or tokenizer.itos[tokenizer.eos_id] != EOS:
        raise ValueError("the tokenizer's special tokens are not <pad> = 0 and <eos> = 1")
    extra = {"model_max_length": model_max_length} if model_max_length else {}
    hf = PreTrainedTokenizerFast(tokenizer_object=_tokenizers_object(tokenizer),
                                 pad_token=PAD, eos_token=EOS, padding_side=padding_side,
                                 clean_up_tokenization_spaces=False, **extra)
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(str(path))
    return hf


# ----------------------------------------------------------------------------- models

def _check_vocab(model: GPT, tokenizer: Tokenizer, what: str) -> None:
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the {what} has a vocabulary of {model.config.vocab_size} tokens but the "
                         f"tokenizer has {tokenizer.vocab_size}: export the model with the "
                         "tokenizer it was trained with (Tokenizer.for_world(world) of its world)")


def _gpt2_config(cfg, tokenizer: Tokenizer, **extra):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_len, n_embd=cfg.d_model,
        n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=4 * cfg.d_model,
        activation_function="gelu", layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
        scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False, tie_word_embeddings=False, use_cache=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
        **extra)


def gpt2_state_dict(model: GPT) -> dict:
    """Our weights under GPT-2's names (``nn.Linear`` weights transposed to ``Conv1D``'s
    ``[in, out]``), as float32 CPU tensors; the scalar head's bias is left out."""
    out = {}
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu", torch.float32)
        if name == "tok_emb.weight":
            out["transformer.wte.weight"] = value
        elif name == "pos_emb.weight":
            out["transformer.wpe.weight"] = value
        elif name.startswith("ln_f."):
            out["transformer." + name] = value
        elif name == "head.weight":
            out["lm_head.weight" if model.config.head == "lm" else "score.weight"] = value
        elif name == "head.bias":
            continue  # GPT-2's score layer has no bias: folded into the normalisation instead
        elif name.startswith("blocks."):
            _, layer, rest = name.split(".", 2)
            module, param = rest.rsplit(".", 1)
            prefix = f"transformer.h.{layer}."
            if module in _LAYER_NORMS:
                out[prefix + f"{_LAYER_NORMS[module]}.{param}"] = value
            elif module in _LINEAR_TO_CONV1D:
                out[prefix + f"{_LINEAR_TO_CONV1D[module]}.{param}"] = (
                    value.t().contiguous() if param == "weight" else value)
            else:
                raise ValueError(f"no GPT-2 counterpart for the parameter {name!r}")
        else:
            raise ValueError(f"no GPT-2 counterpart for the parameter {name!r}")
    return out


def _load_into(hf_model, state: dict) -> None:
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    parameters = set(dict(hf_model.named_parameters()))
    missing = [k for k in missing if k in parameters]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")


def _save(hf_model, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if "safe_serialization" in inspect.signature(hf_model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # older transformers; newer ones always use safetensors
    hf_model.save_pretrained(str(path), **kwargs)


def export_causal_lm(model: GPT, tokenizer: Tokenizer, path: str | Path):
    """Write ``model`` (a language-model GPT) as a ``GPT2LMHeadModel`` to ``path``, with the
    tokenizer (right padding), and return the HF model (float32, on the CPU, in eval mode)."""
    from transformers import GenerationConfig, GPT2LMHeadModel

    if model.config.head != "lm":
        raise ValueError(f"export_causal_lm needs a language model (head='lm'), got head="
                         f"{model.config.head!r}: export a reward model with export_reward_model")
    _check_vocab(model, tokenizer, "model")
    hf = GPT2LMHeadModel(_gpt2_config(model.config, tokenizer))
    _load_into(hf, gpt2_state_dict(model))
    hf.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_id,
                                            pad_token_id=tokenizer.pad_id)
    hf.eval()
    path = Path(path)
    _save(hf, path)
    export_tokenizer(tokenizer, path, model_max_length=model.config.max_len)
    return hf


def export_reward_model(rm: RewardModel, path: str | Path):
    """Write a reward model as a ``GPT2ForSequenceClassification`` (``num_labels=1``) to
    ``path``, with its tokenizer, and return the HF model (float32, CPU, eval mode).

    GPT-2's score layer has no bias: the HF output is our raw reward minus the head's bias
    ``b``, and ``config.rlhf_minimal`` records ``shift = rm.shift - b`` (with ``scale``,
    ``head_bias`` and ``our_shift``) so that ``(hf - shift) / scale`` is the normalised head's
    reward (:func:`normalised_reward`). The exported network is the head alone: a reward model
    with a prior (eq-reward-prior) scores ``rm.score = head + prior_weight * SFT likelihood``, and
    ``config.rlhf_minimal`` records ``prior_weight`` so that a user of the export knows what to add.
    """
    from transformers import GPT2ForSequenceClassification

    model, tokenizer = rm.model, rm.tokenizer
    if model.config.head != "scalar":
        raise ValueError(f"export_reward_model needs a scalar-head model (head='scalar'), got "
                         f"head={model.config.head!r}: export a language model with "
                         "export_causal_lm")
    _check_vocab(model, tokenizer, "reward model")
    bias = float(model.head.bias.detach().float().item())
    norm = {"shift": float(rm.shift) - bias, "scale": float(rm.scale), "head_bias": bias,
            "our_shift": float(rm.shift), "prior_weight": float(rm.prior_weight) if rm.prior is not None else 0.0}
    config = _gpt2_config(model.config, tokenizer, num_labels=1, rlhf_minimal=norm)
    hf = GPT2ForSequenceClassification(config)
    _load_into(hf, gpt2_state_dict(model))
    hf.eval()
    path = Path(path)
    _save(hf, path)
    export_tokenizer(tokenizer, path, model_max_length=model.config.max_len)
    return hf


# ----------------------------------------------------------------------------- using them

def reward_inputs(hf_tokenizer, prompts: list[str], responses: list[str],
                  max_len: int | None = None, padding_side: str | None = None):
    """``(input_ids, attention_mask)`` of ``prompt + response + EOS`` for an exported reward
    model, as :func:`rlhf_minimal.reward.encode_pair_text` builds them (EOS is left out when the
    text fills ``max_len``), padded on ``padding_side`` (the tokenizer's own by default)."""
    eos, pad = hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id
    max_len = max_len or getattr(hf_tokenizer, "model_max_length", None)
    seqs = []
    for prompt, response in zip(prompts, responses):
        ids = hf_tokenizer(prompt, add_special_tokens=False)["input_ids"] + \
            hf_tokenizer(response, add_special_tokens=False)["input_ids"]
        if max_len is not None and len(ids) > max_len:
            raise ValueError(f"prompt plus response is {len(ids)} tokens, longer than the "
                             f"context ({max_len}): {prompt.strip()!r} -> {response[:40]!r}...")
        seqs.append(ids + [eos] if max_len is None or len(ids) < max_len else ids)
    side = padding_side or hf_tokenizer.padding_side
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


@torch.no_grad()
def normalised_reward(hf_model, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Our normalised reward ``[B]`` from an exported reward model: ``(score - shift) / scale``
    with the bias-adjusted ``shift`` of ``config.rlhf_minimal``. Works for left and right
    padding (positions come from ``attention_mask``)."""
    norm = getattr(hf_model.config, "rlhf_minimal", None)
    if not norm:
        raise ValueError("this model's config has no rlhf_minimal normalisation: it was not "
                         "written by export_reward_model")
    if attention_mask is None:
        attention_mask = (input_ids != hf_model.config.pad_token_id).long()
    device = next(hf_model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    out = hf_model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids(attention_mask))
    return ((out.logits[:, 0].float() - norm["shift"]) / norm["scale"]).cpu()


def load_exported(path: str | Path):
    """``(hf_model, hf_tokenizer)`` for a folder written by :func:`export_causal_lm` (a causal
    LM) or :func:`export_reward_model` (a sequence classifier), in eval mode."""
    from transformers import (AutoConfig, AutoModelForCausalLM,
                              AutoModelForSequenceClassification, AutoTokenizer)

    config = AutoConfig.from_pretrained(str(path))
    is_reward = getattr(config, "rlhf_minimal", None) is not None
    auto = AutoModelForSequenceClassification if is_reward else AutoModelForCausalLM
    return auto.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))

"""The course's pieces side by side with TRL's trainers, on the same data and the same model.

Chapter 7 exports the course's GPT and word tokenizer as GPT-2 ``transformers`` models with the
same logits (:mod:`rlhf_minimal.export`). This module runs TRL's trainers on those exports, with
the data of every stage in the formats TRL reads, so that each of our stages can be set next to
its TRL counterpart:

* :func:`stage_datasets` (with :func:`save_stage_datasets` / :func:`load_stage_datasets`): the
  data of every stage as ``datasets.Dataset`` with TRL's column names: ``prompt``/``completion``
  for SFT, ``prompt`` (and the task's JSON, for the gold judge) for RL and evaluation,
  ``prompt``/``chosen``/``rejected`` for comparisons.
* :func:`trl_reward_loss_on_batch` measures that TRL's ``RewardTrainer.compute_loss`` on one
  batch equals our ``pairwise_loss`` on the same pairs (to float rounding, below 1e-6): the
  same token ids go in, the same reward comes out up to the head's bias, and the bias cancels
  in ``r_chosen - r_rejected``.
* :func:`train_trl_reward_model` trains TRL's ``RewardTrainer`` from our SFT model on our
  comparisons and reports held-out pairwise accuracy computed as ours is (ties count half) and
  the wall-clock seconds.
* :func:`train_trl_grpo` trains TRL's ``GRPOTrainer`` from our SFT model against our reward
  model (its normalised score, as our PPO uses it), sampling at temperature 1 without top-k or
  top-p, with a KL penalty (``beta > 0``) to the SFT model; it reports wall-clock seconds and the
  reward-model and gold scores of the sampled completions.
* :func:`train_trl_dpo` trains TRL's ``DPOTrainer`` on the same comparisons, the SFT model as
  the reference.
* :func:`evaluate_policy_text` decodes any mix of our policies and HF policies exactly as our
  :func:`~rlhf_minimal.evaluate.compare_policies` does (sampled at T=1 and greedy, same seeds), scores
  with the gold judge and measures the KL to the SFT model; :func:`comparison_table` turns it into
  one row per policy (gold score, KL, wall-clock): PPO (ours) against GRPO and DPO (TRL) and SFT.

Conventions that make the two sides comparable
----------------------------------------------
* **Token ids.** TRL's trainers build text as ``prompt + response + eos_token`` and tokenize
  it with the exported tokenizer. Our prompts end with ``"\\n"`` and the exported tokenizer
  splits ``"<eos>"`` out as the special token, so the ids are exactly ours (``prompt ids +
  response ids + [EOS]``); :func:`trl_reward_loss_on_batch` and the trainers check this on the
  prepared data and stop with an error if it ever fails. No chat template is involved (the
  prompts are plain text).
* **Context.** TRL would silently drop (``RewardTrainer``) or truncate (``DPOTrainer``) pairs
  longer than ``max_length``; here ``max_length`` is off and pairs that do not fit the model's
  context with their EOS are refused with an error naming the row.
* **Positions.** Our GPT counts positions over real tokens (left padding gets position 0);
  GPT-2 counts them from the start of the row unless given ``position_ids``. ``generate``
  derives them from the attention mask by itself, but ``GRPOTrainer`` scores left-padded
  prompt + completion rows without ``position_ids``, so the log-probabilities it trains on
  would come from a slightly different model than the one that sampled. :func:`use_course_positions`
  fills in our positions whenever none are given; :func:`train_trl_grpo` puts it on the policy
  and the reference model. Right-padded batches (reward model, DPO) need nothing.
* **Precision and device.** float32 on the CPU (``use_cpu=True``, no fp16/bf16: TRL's configs
  default to bf16), gradient checkpointing off (TRL's default is on), no checkpoints written
  (``save_strategy="no"``), nothing reported (``report_to=[]``), progress bars off when
  ``TQDM_DISABLE`` is set, the seed passed to TRL. Everything runs offline: the models and the
  tokenizer are loaded from the exported folders, never from the Hub.

Files: each trainer writes the export it starts from under ``output_dir`` (a new temporary folder
when it is None, left in place) and nothing else: no checkpoints, no logs.

What differs by design, and is reported rather than hidden: TRL's pairwise loss is a plain mean
over pairs, ours weighs each prompt the same (InstructGPT); TRL's reward head is GPT-2's
``score`` layer without a bias, initialised N(0, 0.02), ours has a bias and a wider
initialisation; TRL's learning-rate schedule is linear decay, ours cosine with warmup; GRPO has
no value function (group-normalised rewards instead of GAE) and puts the KL in the loss, PPO
puts it in the reward.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from datasets import Dataset, load_from_disk

from .data import DataError, demonstrations_dataset, prompts_dataset
from .evaluate import compare_policies, sequence_kl, win_rate, win_share
from .export import export_causal_lm, export_reward_model, position_ids, reward_inputs
from .model import GPT
from .preference import validate_comparisons
from .reward import RewardModel, pairwise_loss
from .world import Task, World

_MANIFEST = "stages.json"


# ----------------------------------------------------------------------------- data

def _as_rows(rows, what: str = "rows") -> list[dict]:
    """A list of dicts from a ``datasets.Dataset`` or a list of dicts (refusing anything else)."""
    if rows is None:
        raise DataError(f"{what} is None: pass comparison rows (a list of dicts or a datasets.Dataset)")
    if isinstance(rows, Dataset):
        return rows.to_list()
    if isinstance(rows, (list, tuple)):
        if rows and not all(isinstance(r, dict) for r in rows):
            bad = next(i for i, r in enumerate(rows) if not isinstance(r, dict))
            raise DataError(f"{what}[{bad}] is a {type(rows[bad]).__name__}, not a dict with prompt, chosen "
                            "and rejected")
        return list(rows)
    raise DataError(f"{what} must be a list of dicts or a datasets.Dataset, got {type(rows).__name__}")


def _comparison_rows(rows, what: str = "rows", minimum: int = 1) -> list[dict]:
    rows = _as_rows(rows, what)
    if len(rows) < minimum:
        raise DataError(f"{what} has {len(rows)} comparisons; at least {minimum} needed")
    for i, row in enumerate(rows):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            raise DataError(f"{what}[{i}] has no {', '.join(repr(m) for m in missing)} (it has "
                            f"{', '.join(map(repr, row))}); every comparison needs prompt, chosen and rejected")
    validate_comparisons(rows)  # prompt, chosen, rejected present and non-empty, chosen != rejected
    return rows


def stage_datasets(world: World, comparisons_rows=None, heldout_rows=None) -> dict[str, Dataset]:
    """Every stage's data as ``datasets.Dataset`` with the columns TRL reads.

    * ``"sft"``: ``prompt`` / ``completion`` (the demonstrations of the SFT split; also
      ``family``, ``task``, ``writer``, ``lang``): ``SFTTrainer``'s prompt-completion format.
    * ``"rl"`` and ``"eval"``: ``prompt`` (plus ``family``, ``task`` JSON and ``lang``, so the gold
      judge can score a completion: ``Task.from_json(row["prompt"], row["task"])``): the prompt-only
      format of ``GRPOTrainer`` and ``RLOOTrainer``.
    * ``"comparisons"`` (when ``comparisons_rows`` is given) and ``"heldout_comparisons"`` (when
      ``heldout_rows`` is): ``prompt`` / ``chosen`` / ``rejected`` with any other columns of the
      rows (``ranking``, ``labeler``, ``prompt_id``, ``task``): the explicit-prompt preference
      format of ``RewardTrainer`` and ``DPOTrainer``.
    """
    if not isinstance(world, World):
        raise TypeError(f"world must be a rlhf_minimal.world.World (make_world(...)), got {type(world).__name__}")
    out = {"sft": demonstrations_dataset(world, "sft"), "rl": prompts_dataset(world, "rl"),
           "eval": prompts_dataset(world, "eval")}
    for name, rows in (("comparisons", comparisons_rows), ("heldout_comparisons", heldout_rows)):
        if rows is not None:
            out[name] = Dataset.from_list(_comparison_rows(rows, name))
    return out


def save_stage_datasets(dsets: dict, folder: str | Path) -> Path:
    """Write each data set with ``save_to_disk`` to ``folder/<stage>``, plus a ``stages.json``
    listing them and their columns. Returns the folder."""
    if not isinstance(dsets, dict) or not dsets:
        raise ValueError("dsets must be a non-empty dict of stage name -> datasets.Dataset "
                         "(what stage_datasets returns)")
    for name, ds in dsets.items():
        if not isinstance(ds, Dataset):
            raise TypeError(f"stage {name!r} is a {type(ds).__name__}, not a datasets.Dataset")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"stage name {name!r} cannot be a folder name")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, ds in dsets.items():
        ds.save_to_disk(str(folder / name))
        manifest[name] = {"rows": len(ds), "columns": list(ds.column_names)}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folder


def load_stage_datasets(folder: str | Path) -> dict[str, Dataset]:
    """The data sets written by :func:`save_stage_datasets`, loaded with ``load_from_disk``."""
    folder = Path(folder)
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} has no {_MANIFEST}: it was not written by save_stage_datasets")
    manifest = json.loads(manifest_path.read_text())
    out = {}
    for name, meta in manifest.items():
        if not (folder / name).is_dir():
            raise FileNotFoundError(f"stage {name!r} is listed in {manifest_path} but {folder / name} is missing")
        out[name] = load_from_disk(str(folder / name))
        if list(out[name].column_names) != meta["columns"] or len(out[name]) != meta["rows"]:
            raise DataError(f"stage {name!r} in {folder} does not match its manifest "
                            f"({len(out[name])} rows, columns {out[name].column_names}; expected "
                            f"{meta['rows']} rows, columns {meta['columns']})")
    return out


# ----------------------------------------------------------------------------- shared helpers

def _tqdm_disabled() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def _cpu_args(config_cls, output_dir, seed: int, overrides: dict | None = None, **kwargs):
    """A TRL config for a deterministic float32 CPU run that writes and reports nothing:
    these defaults, then ``kwargs``, then ``overrides`` (checked to be fields of the config)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)}
    # newer transformers call it activation_checkpointing (gradient_checkpointing is a deprecated alias)
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    defaults = dict(output_dir=str(output_dir), seed=seed, data_seed=seed, use_cpu=True, bf16=False,
                    fp16=False, report_to=[], save_strategy="no", disable_tqdm=_tqdm_disabled(),
                    dataloader_num_workers=0, logging_steps=1, push_to_hub=False, **{checkpointing: False})
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise ValueError(f"{config_cls.__name__} has no field {', '.join(map(repr, unknown))}")
    return config_cls(**{**defaults, **kwargs, **(overrides or {})})


def _output_dir(output_dir, prefix: str) -> Path:
    path = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix=f"rlhf-{prefix}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_float32(model_class, folder):
    """A model exported by this package, loaded in float32 under every supported transformers:
    ``from_pretrained`` takes ``torch_dtype`` before 4.56 and ``dtype`` from then on, so neither is
    passed: the export is float32, and ``float()`` makes sure of it whatever the default."""
    return model_class.from_pretrained(str(folder)).float()


def _check_lm(model, tokenizer, what: str) -> None:
    if not isinstance(model, GPT):
        raise TypeError(f"{what} must be our GPT (rlhf_minimal.model.GPT), got {type(model).__name__}")
    if model.config.head != "lm":
        raise ValueError(f"{what} must be a language model (head='lm'), got head={model.config.head!r}")
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"{what} has a vocabulary of {model.config.vocab_size} tokens but the tokenizer has "
                         f"{tokenizer.vocab_size}: pass the tokenizer the model was trained with")


def _check_fits(tokenizer, rows: list[dict], max_len: int, what: str) -> None:
    """Every prompt + response + EOS fits the context (TRL always appends EOS; it would drop or
    cut longer pairs without a word)."""
    for i, row in enumerate(rows):
        n_prompt = len(tokenizer.encode(row["prompt"]))
        for key in ("chosen", "rejected"):
            n = n_prompt + len(tokenizer.encode(row[key])) + 1
            if n > max_len:
                raise ValueError(f"{what}[{i}]: prompt + {key} + EOS is {n} tokens, longer than the model's "
                                 f"context ({max_len}); remove that row or shorten it")


def _pairs_dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                              for r in rows])


def _train_timed(trainer):
    """Run ``trainer.train()``; the trained model (in eval mode), the seconds it took, and the log."""
    start = time.time()
    trainer.train()
    return trainer.model.eval(), time.time() - start, _log_history(trainer)


def _log_history(trainer) -> list[dict]:
    return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}
            for entry in trainer.state.log_history]


def use_course_positions(hf_model):
    """Make a GPT-2-style ``transformers`` model count positions as our GPT does,
    ``attention_mask.cumsum(-1) - 1`` (0 on left padding), whenever it is called without
    ``position_ids``. Explicit ``position_ids`` (``generate`` passes them) are left alone.

    A forward pre-hook on the backbone (``hf_model.base_model``), so TRL's patched forwards go
    through it too. Returns the hook's handle (``handle.remove()`` undoes it).
    """
    backbone = getattr(hf_model, "base_model", hf_model)

    def hook(module, args, kwargs):
        if kwargs.get("position_ids") is not None:
            return None
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        if mask is None or ids is None or mask.dim() != 2:
            return None
        kwargs["position_ids"] = position_ids(mask)[:, -ids.shape[1]:]
        return args, kwargs

    return backbone.register_forward_pre_hook(hook, with_kwargs=True)


@torch.no_grad()
def hf_reward_scores(hf_model, hf_tokenizer, prompts: list[str], responses: list[str],
                     batch_size: int = 128) -> torch.Tensor:
    """The raw output of a ``transformers`` sequence classifier for ``prompt + response + EOS``
    (as our reward model reads them: :func:`rlhf_minimal.export.reward_inputs`), ``[N]``."""
    hf_model.eval()
    device = next(hf_model.parameters()).device
    out = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = reward_inputs(hf_tokenizer, prompts[start:start + batch_size],
                                  responses[start:start + batch_size], padding_side="right")
        ids, mask = ids.to(device), mask.to(device)
        logits = hf_model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
        out.append(logits[:, 0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def hf_pairwise_accuracy(hf_model, hf_tokenizer, rows) -> float:
    """Share of comparisons where the chosen response gets the higher score, ties counting half:
    :func:`rlhf_minimal.reward.pairwise_accuracy` for a ``transformers`` reward model."""
    rows = _as_rows(rows)
    if not rows:
        return float("nan")
    prompts = [r["prompt"] for r in rows]
    chosen = hf_reward_scores(hf_model, hf_tokenizer, prompts, [r["chosen"] for r in rows])
    rejected = hf_reward_scores(hf_model, hf_tokenizer, prompts, [r["rejected"] for r in rows])
    return round(win_share(chosen, rejected).item(), 4)


def _our_ids(tokenizer, prompt: str, response: str) -> list[int]:
    return tokenizer.encode(prompt) + tokenizer.encode(response) + [tokenizer.eos_id]


# ----------------------------------------------------------------------------- reward model

def _reward_trainer(hf_model, hf_tokenizer, rows: list[dict], output_dir, seed: int, overrides=None, **config):
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    args = _cpu_args(TRLRewardConfig, output_dir, seed, overrides, max_length=None, disable_dropout=True,
                     center_rewards_coefficient=None, **config)
    return RewardTrainer(model=hf_model, args=args, train_dataset=_pairs_dataset(rows),
                         processing_class=hf_tokenizer)


def _check_reward_ids(trainer, tokenizer, rows: list[dict]) -> None:
    """TRL's prepared ids are ours: prompt + response + EOS, for every pair."""
    data = trainer.train_dataset
    if len(data) != len(rows):
        raise RuntimeError(f"TRL kept {len(data)} of {len(rows)} pairs: some were filtered out")
    for i, (prepared, row) in enumerate(zip(data, rows)):
        for key in ("chosen", "rejected"):
            ours = _our_ids(tokenizer, row["prompt"], row[key])
            if list(prepared[f"{key}_ids"]) != ours:
                raise RuntimeError(f"row {i}: TRL tokenized prompt + {key} to {list(prepared[f'{key}_ids'])}, "
                                   f"ours is {ours}: the two sides would not see the same sequences")


def trl_reward_loss_on_batch(rm: RewardModel, rows, tmp_folder: str | Path, batch_size: int | None = None) -> dict:
    """TRL's ``RewardTrainer.compute_loss`` and our ``pairwise_loss`` on the same batch of pairs.

    The reward model is exported (:func:`~rlhf_minimal.export.export_reward_model`) to
    ``tmp_folder/reward_model`` and handed to TRL's ``RewardTrainer`` with the exported tokenizer.
    TRL prepares the explicit-prompt rows itself: it appends ``eos_token`` to ``chosen`` and
    ``rejected`` and tokenizes ``prompt + chosen`` and ``prompt + rejected`` (no chat template:
    the rows are plain text). That gives exactly our ids, ``encode(prompt) + encode(response) +
    [EOS]``, which is checked for every row before the loss is computed. The first ``batch_size``
    rows (all by default) go through TRL's own collator (``DataCollatorForPreference``: chosen
    rows then rejected rows, right-padded) and ``compute_loss``, without gradients.

    Our side: ``RewardModel.raw`` of the same pairs and ``pairwise_loss(chosen, rejected)`` (an
    unweighted mean, as TRL's). GPT-2's ``score`` layer has no bias, so every HF reward is our
    raw reward minus the head's bias ``b``; ``b`` cancels in ``r_chosen - r_rejected``, and the
    two losses agree to float rounding.

    Returns ``trl_loss``, ``our_loss``, ``abs_diff``, ``n_pairs``, ``head_bias``, the largest
    difference between TRL's rewards plus ``b`` and ours (``max_reward_diff``), and
    ``our_prompt_weighted_loss``: the loss our training uses, each prompt weighing the same.
    """
    from transformers import AutoTokenizer

    if not isinstance(rm, RewardModel):
        raise TypeError(f"rm must be a rlhf_minimal.reward.RewardModel, got {type(rm).__name__}")
    rows = _comparison_rows(rows)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        rows = rows[:batch_size]
    _check_fits(rm.tokenizer, rows, rm.model.config.max_len, "rows")
    tmp_folder = Path(tmp_folder)
    hf = export_reward_model(rm, tmp_folder / "reward_model")
    hf_tok = AutoTokenizer.from_pretrained(str(tmp_folder / "reward_model"))
    trainer = _reward_trainer(hf, hf_tok, rows, tmp_folder / "trl_reward", seed=0,
                              per_device_train_batch_size=len(rows))
    _check_reward_ids(trainer, rm.tokenizer, rows)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
    trainer.model.eval()
    with torch.no_grad():
        trl_loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    trl_rewards = outputs.logits.squeeze(-1).float().cpu()

    prompts = [r["prompt"] for r in rows]
    chosen = rm.raw(prompts, [r["chosen"] for r in rows])
    rejected = rm.raw(prompts, [r["rejected"] for r in rows])
    our_loss = pairwise_loss(chosen, rejected)
    bias = float(hf.config.rlhf_minimal["head_bias"])
    counts: dict = {}
    for p in prompts:
        counts[p] = counts.get(p, 0) + 1
    weights = torch.tensor([1.0 / (len(counts) * counts[p]) for p in prompts])
    return {"trl_loss": float(trl_loss), "our_loss": float(our_loss),
            "abs_diff": abs(float(trl_loss) - float(our_loss)), "n_pairs": len(rows), "head_bias": bias,
            "max_reward_diff": float((trl_rewards + bias - torch.cat([chosen, rejected])).abs().max()),
            "our_prompt_weighted_loss": float(pairwise_loss(chosen, rejected, weights=weights))}


def train_trl_reward_model(sft_model: GPT, tokenizer, rows, heldout_rows, epochs: int = 1, lr: float = 1e-3,
                           batch_size: int = 16, seed: int = 0, output_dir: str | Path | None = None,
                           max_steps: int | None = None, logging_steps: int = 1,
                           config_overrides: dict | None = None):
    """Train TRL's ``RewardTrainer`` from our SFT model on our comparisons.

    The SFT model is exported as a causal LM (``output_dir/sft``) and TRL loads it by path as
    ``AutoModelForSequenceClassification`` with one label, as it does for any causal LM: the
    transformer keeps the SFT weights, the unembedding is dropped and a new ``score`` head (no
    bias, N(0, 0.02)) is drawn under ``seed``. Training uses TRL's defaults otherwise (AdamW,
    linear decay, plain mean over pairs), ``batch_size`` pairs per step, ``epochs`` passes (or
    ``max_steps`` steps); ``config_overrides`` sets any other field of TRL's ``RewardConfig``.

    ``heldout_rows`` are scored afterwards the way ours are (:func:`hf_pairwise_accuracy`: reward of
    ``prompt + response + EOS``, ties half). Returns ``(hf_model, info)``; ``info`` holds
    ``heldout_accuracy``, ``train_accuracy`` (first 2000 training pairs, as ours), ``seconds``
    (the ``train()`` call), ``steps``, the per-step ``loss`` and TRL's ``log``.
    """
    from transformers import AutoTokenizer

    _check_lm(sft_model, tokenizer, "sft_model")
    rows = _comparison_rows(rows, "rows")
    heldout = _comparison_rows(heldout_rows, "heldout_rows")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("logging_steps", logging_steps)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    max_len = sft_model.config.max_len
    _check_fits(tokenizer, rows, max_len, "rows")
    _check_fits(tokenizer, heldout, max_len, "heldout_rows")
    out = _output_dir(output_dir, "trl-reward")
    export_causal_lm(sft_model, tokenizer, out / "sft")
    hf_tok = AutoTokenizer.from_pretrained(str(out / "sft"))
    trainer = _reward_trainer(str(out / "sft"), hf_tok, rows, out / "trainer", seed,
                              num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch_size,
                              max_steps=max_steps if max_steps is not None else -1,
                              logging_steps=logging_steps, overrides=config_overrides)
    _check_reward_ids(trainer, tokenizer, rows)
    model, seconds, log = _train_timed(trainer)
    info = {"heldout_accuracy": hf_pairwise_accuracy(model, hf_tok, heldout),
            "train_accuracy": hf_pairwise_accuracy(model, hf_tok, rows[:2000]),
            "seconds": round(seconds, 2), "steps": trainer.state.global_step,
            "loss": [e["loss"] for e in log if "loss" in e], "log": log,
            "n_pairs": len(rows), "n_heldout_pairs": len(heldout),
            "config": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                       "max_steps": max_steps}}
    return model, info


# ----------------------------------------------------------------------------- GRPO

def _tasks_dataset(tasks: list[Task]) -> Dataset:
    return Dataset.from_list([{"prompt": t.prompt, "task": t.to_json(), "family": t.family, "lang": t.lang}
                              for t in tasks])


def make_reward_function(rm: RewardModel, eos_id: int, no_eos_penalty: float | None = -3.0, judge=None,
                         log: dict | None = None):
    """A reward function in TRL's form, ``f(prompts, completions, completion_ids, **columns) ->
    list[float]``: our reward model's normalised score of (prompt, completion), as our PPO
    rewards a response; a completion that never emitted EOS gets ``no_eos_penalty`` instead
    (``None``: no penalty). When ``log`` is given, each call appends the batch's mean reward,
    mean reward-model score, gold score (with ``judge``) and share without EOS to it."""

    def course_reward_model(prompts, completions, completion_ids=None, task=None, **_):
        scores = rm.score(list(prompts), list(completions)).tolist()
        has_eos = ([bool(ids) and ids[-1] == eos_id for ids in completion_ids] if completion_ids is not None
                   else [True] * len(scores))
        rewards = [s if ok or no_eos_penalty is None else float(no_eos_penalty) for s, ok in zip(scores, has_eos)]
        if log is not None:
            log.setdefault("reward", []).append(sum(rewards) / len(rewards))
            log.setdefault("rm_score", []).append(sum(scores) / len(scores))
            log.setdefault("no_eos", []).append(1.0 - sum(has_eos) / len(has_eos))
            if judge is not None:
                tasks = ([Task.from_json(p, t) for p, t in zip(prompts, task)] if task is not None
                         else [judge.task_for(p) for p in prompts])
                gold = [judge.score(t, c).score for t, c in zip(tasks, completions)]
                log.setdefault("gold_score", []).append(sum(gold) / len(gold))
        return rewards

    return course_reward_model


def train_trl_grpo(sft_model: GPT, tokenizer, rm: RewardModel, tasks: list[Task], judge=None, steps: int = 40,
                   seed: int = 0, prompts_per_step: int = 16, num_generations: int = 4,
                   minibatch_size: int = 16, epochs_per_batch: int = 1, max_new_tokens: int = 40,
                   beta: float = 0.1, lr: float = 3e-5, temperature: float = 1.0,
                   no_eos_penalty: float | None = -3.0, loss_type: str = "dapo",
                   output_dir: str | Path | None = None, logging_steps: int = 1,
                   config_overrides: dict | None = None):
    """Train TRL's ``GRPOTrainer`` from our SFT model against our reward model.

    The SFT model is exported as a GPT-2 causal LM (``output_dir/sft_policy``); the policy is
    that export and the reference TRL loads from the same folder (``beta > 0`` keeps a frozen
    copy). Both get :func:`use_course_positions`. The reward is our reward model's normalised
    score of (prompt, completion), ``no_eos_penalty`` for a completion without EOS, as in our
    PPO (:func:`make_reward_function`).

    Sampling: temperature ``temperature`` (1 by default, as our PPO), ``top_k=0`` and
    ``top_p=1`` (no truncation of the distribution), at most ``max_new_tokens`` tokens, fewer
    when the longest prompt leaves less room in the context (as our rollout does).

    Batches, in our PPO's terms: one rollout batch is ``prompts_per_step`` prompts times
    ``num_generations`` completions each (16 x 4 = 64 by default, our PPO's 64 responses); TRL
    cuts it into minibatches of ``minibatch_size`` completions (``per_device_train_batch_size``)
    and makes ``epochs_per_batch`` passes (``num_iterations``), one optimizer step per minibatch.
    ``steps`` counts rollout batches, so TRL's ``max_steps`` is ``steps * (rollout / minibatch)
    * epochs_per_batch``. ``loss_type`` is TRL's (``"dapo"`` by default, or ``"grpo"``,
    ``"dr_grpo"``, ``"bnpo"``...). The optimizer is set as our PPO's: AdamW with betas (0.9, 0.95),
    no weight decay, a constant learning rate ``lr``, gradients clipped to norm 1 (TRL's defaults
    would decay the rate linearly to 0). ``config_overrides`` sets any other field of TRL's
    ``GRPOConfig``.

    Returns ``(hf_policy, info)``: ``seconds`` (the ``train()`` call: sampling, scoring and
    updates), per rollout batch ``reward``, ``rm_score``, ``gold_score`` (with ``judge``) and
    ``no_eos`` of the sampled completions, per optimizer step ``kl`` (TRL's mean per-token
    estimate of the KL to the reference, not our per-response sum), and TRL's whole ``log``.

    Offline on the CPU this works with transformers' own ``generate`` (no vLLM, which needs a
    GPU; ``use_vllm`` stays off).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    _check_lm(sft_model, tokenizer, "sft_model")
    if not isinstance(rm, RewardModel):
        raise TypeError(f"rm must be a rlhf_minimal.reward.RewardModel, got {type(rm).__name__}")
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, Task) for t in tasks):
        raise ValueError("tasks must be a non-empty list of world Tasks (for example world.splits['rl'])")
    if num_generations < 2:
        raise ValueError(f"GRPO compares completions of the same prompt: num_generations must be at least 2, "
                         f"got {num_generations}")
    for name, value in (("steps", steps), ("prompts_per_step", prompts_per_step),
                        ("minibatch_size", minibatch_size), ("epochs_per_batch", epochs_per_batch),
                        ("max_new_tokens", max_new_tokens)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    rollout = prompts_per_step * num_generations
    if rollout % minibatch_size:
        raise ValueError(f"a rollout batch of {prompts_per_step} prompts x {num_generations} completions = "
                         f"{rollout} must be a multiple of minibatch_size ({minibatch_size})")
    if not beta > 0:
        raise ValueError(f"beta (the KL coefficient) must be positive to keep the policy near the SFT model, "
                         f"got {beta}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive (GRPO samples), got {temperature}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    longest = max(len(tokenizer.encode(t.prompt)) for t in tasks)
    room = sft_model.config.max_len - longest
    if room < 2:
        raise ValueError(f"a prompt of {longest} tokens leaves no room to answer in a context of "
                         f"{sft_model.config.max_len}")
    max_completion = min(max_new_tokens, room)

    out = _output_dir(output_dir, "trl-grpo")
    export_causal_lm(sft_model, tokenizer, out / "sft_policy")
    policy = _load_float32(AutoModelForCausalLM, out / "sft_policy")
    hf_tok = AutoTokenizer.from_pretrained(str(out / "sft_policy"), padding_side="left")
    steps_per_generation = rollout // minibatch_size
    args = _cpu_args(GRPOConfig, out / "trainer", seed, config_overrides,
                     max_steps=steps * steps_per_generation * epochs_per_batch, per_device_train_batch_size=minibatch_size, steps_per_generation=steps_per_generation,
                     num_generations=num_generations, num_iterations=epochs_per_batch,
                     max_completion_length=max_completion, temperature=temperature, top_k=0, top_p=1.0,
                     min_p=None, repetition_penalty=1.0, beta=beta, learning_rate=lr, loss_type=loss_type,
                     use_vllm=False, logging_steps=logging_steps, shuffle_dataset=True,
                     lr_scheduler_type="constant", adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0,
                     max_grad_norm=1.0)
    reward_log: dict = {}
    reward_fn = make_reward_function(rm, tokenizer.eos_id, no_eos_penalty, judge, reward_log)
    hooks = [use_course_positions(policy)]
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_fn, args=args, train_dataset=_tasks_dataset(tasks),
                          processing_class=hf_tok)
    if trainer.ref_model is not None:
        hooks.append(use_course_positions(trainer.ref_model))
    start = time.time()
    try:
        trainer.train()
    finally:
        for handle in hooks:
            handle.remove()
    seconds = time.time() - start
    model = trainer.model.eval()
    log = _log_history(trainer)
    info = {"seconds": round(seconds, 2), "steps": steps, "optimizer_steps": trainer.state.global_step,
            **{k: [round(v, 5) for v in vs] for k, vs in reward_log.items()},
            "kl": [e["kl"] for e in log if "kl" in e], "log": log,
            "config": {"prompts_per_step": prompts_per_step, "num_generations": num_generations,
                       "minibatch_size": minibatch_size, "epochs_per_batch": epochs_per_batch,
                       "max_completion_length": max_completion, "beta": beta, "lr": lr,
                       "temperature": temperature, "loss_type": loss_type, "seed": seed,
                       "no_eos_penalty": no_eos_penalty}}
    return model, info


# ----------------------------------------------------------------------------- DPO

def _check_dpo_ids(trainer, tokenizer, rows: list[dict]) -> None:
    data = trainer.train_dataset
    if len(data) != len(rows):
        raise RuntimeError(f"TRL kept {len(data)} of {len(rows)} pairs: some were filtered out")
    for i, (prepared, row) in enumerate(zip(data, rows)):
        expected = {"prompt_ids": tokenizer.encode(row["prompt"]),
                    "chosen_ids": tokenizer.encode(row["chosen"]) + [tokenizer.eos_id],
                    "rejected_ids": tokenizer.encode(row["rejected"]) + [tokenizer.eos_id]}
        for key, ours in expected.items():
            if list(prepared[key]) != ours:
                raise RuntimeError(f"row {i}: TRL's {key} are {list(prepared[key])}, ours {ours}")


def dpo_implicit_accuracy(policy, ref, tokenizer, rows) -> float:
    """Share of comparisons where DPO's implicit reward, ``log pi(y|x) - log pi_ref(y|x)`` over the
    response and its EOS, is higher for the chosen response (ties half). ``policy`` and ``ref``
    have our model interface (a GPT, or an HF model wrapped in :class:`~rlhf_minimal.hf.HFCausalLM`)."""
    rows = _as_rows(rows)
    if not rows:
        return float("nan")
    prompts = [SimpleNamespace(prompt=r["prompt"]) for r in rows]
    chosen = torch.tensor(sequence_kl(policy, ref, tokenizer, prompts, [r["chosen"] for r in rows]))
    rejected = torch.tensor(sequence_kl(policy, ref, tokenizer, prompts, [r["rejected"] for r in rows]))
    return round(win_share(chosen, rejected).item(), 4)


def train_trl_dpo(sft_model: GPT, tokenizer, rows, beta: float = 0.1, epochs: int = 1, lr: float = 3e-5,
                  batch_size: int = 16, seed: int = 0, heldout_rows=None, output_dir: str | Path | None = None,
                  max_steps: int | None = None, logging_steps: int = 1,
                  config_overrides: dict | None = None):
    """Train TRL's ``DPOTrainer`` from our SFT model on our comparisons, the SFT model as reference.

    The SFT model is exported as a causal LM (``output_dir/sft``) and loaded twice: the policy and
    a frozen reference (passed as ``ref_model``). TRL appends EOS to ``chosen`` and ``rejected``
    and tokenizes ``prompt`` and ``prompt + response``; the prompt ids, response ids and EOS are
    checked to be ours. Loss: TRL's sigmoid DPO loss with ``beta``; ``batch_size`` pairs per step;
    TRL's optimizer defaults (AdamW, linear decay); ``config_overrides`` sets any other field of
    TRL's ``DPOConfig``.

    Returns ``(hf_policy, info)``: ``seconds`` (the ``train()`` call), ``steps``, the per-step
    ``loss``, TRL's ``log`` (``rewards/accuracies``, ``rewards/margins``...) and, with
    ``heldout_rows``, ``heldout_implicit_accuracy`` (:func:`dpo_implicit_accuracy`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from .hf import HFCausalLM

    _check_lm(sft_model, tokenizer, "sft_model")
    rows = _comparison_rows(rows, "rows")
    heldout = _comparison_rows(heldout_rows, "heldout_rows") if heldout_rows is not None else None
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("logging_steps", logging_steps)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    _check_fits(tokenizer, rows, sft_model.config.max_len, "rows")
    out = _output_dir(output_dir, "trl-dpo")
    export_causal_lm(sft_model, tokenizer, out / "sft")
    policy = _load_float32(AutoModelForCausalLM, out / "sft")
    ref = _load_float32(AutoModelForCausalLM, out / "sft").eval()
    hf_tok = AutoTokenizer.from_pretrained(str(out / "sft"))
    args = _cpu_args(DPOConfig, out / "trainer", seed, config_overrides, beta=beta, learning_rate=lr,
                     num_train_epochs=epochs, per_device_train_batch_size=batch_size, max_length=None, precompute_ref_log_probs=False,
                     max_steps=max_steps if max_steps is not None else -1, logging_steps=logging_steps)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=_pairs_dataset(rows),
                         processing_class=hf_tok)
    _check_dpo_ids(trainer, tokenizer, rows)
    model, seconds, log = _train_timed(trainer)
    info = {"seconds": round(seconds, 2), "steps": trainer.state.global_step,
            "loss": [e["loss"] for e in log if "loss" in e], "log": log, "n_pairs": len(rows),
            "config": {"beta": beta, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                       "max_steps": max_steps}}
    if heldout is not None:
        with torch.no_grad():
            info["heldout_implicit_accuracy"] = dpo_implicit_accuracy(
                HFCausalLM(model).eval(), sft_model.eval(), tokenizer, heldout)
    return model, info


# ----------------------------------------------------------------------------- evaluation

def as_course_model(model):
    """Our model interface for any policy: our GPT as it is, a ``transformers`` causal LM wrapped
    in :class:`~rlhf_minimal.hf.HFCausalLM` (positions from the attention mask, as ours)."""
    from .hf import HFCausalLM

    if isinstance(model, (GPT, HFCausalLM)):
        return model
    if hasattr(model, "base_model") and hasattr(model, "get_output_embeddings"):
        if model.get_output_embeddings() is None:
            raise TypeError(f"{type(model).__name__} has no language-model head: only causal LMs can be evaluated "
                            "as policies")
        return HFCausalLM(model).eval()
    raise TypeError(f"cannot evaluate a {type(model).__name__} as a policy: pass our GPT or a transformers "
                    "causal language model")


def evaluate_policy_text(policies: dict, sft_model: GPT, tokenizer, judge, tasks: list[Task],
                         temperature: float = 1.0, max_new_tokens: int = 40, seed: int = 0) -> dict:
    """Decode every policy exactly as :func:`rlhf_minimal.evaluate.compare_policies` does and score it.

    ``policies`` maps names to our GPTs or ``transformers`` causal LMs (wrapped with
    :func:`as_course_model`, so both go through our ``generate`` with the same seeds and
    tokenizer). For each decoding (``"sampled"`` at ``temperature``, ``"greedy"``) and policy:
    responses, the per-family gold table, ``gold_score``, ``hallucination`` and, sampled, ``kl``:
    the mean over responses of ``sum_t log pi - log pi_SFT`` (our ``sequence_kl``, in nats).
    Verdict objects are replaced by their scores so that the result is JSON-ready.
    """
    if not isinstance(policies, dict) or not policies:
        raise ValueError("policies must be a non-empty dict of name -> model")
    _check_lm(sft_model, tokenizer, "sft_model")
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, Task) for t in tasks):
        raise ValueError("tasks must be a non-empty list of world Tasks (for example world.splits['eval'])")
    models = {name: as_course_model(m) for name, m in policies.items()}
    for name, m in models.items():
        if m.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"policy {name!r} has a vocabulary of {m.config.vocab_size} tokens, the tokenizer "
                             f"{tokenizer.vocab_size}")
    was_training = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        with torch.no_grad():
            result = compare_policies(models, judge, tokenizer, tasks, sft_model.eval(), temperature,
                                      max_new_tokens, seed)
    finally:
        for name, m in models.items():
            m.train(was_training[name])
    for decoding in result.values():
        for entry in decoding.values():
            entry["scores"] = [v.score for v in entry.pop("verdicts")]
    return result


def comparison_table(evaluation: dict, seconds: dict | None = None) -> list[dict]:
    """One row per policy from :func:`evaluate_policy_text`: sampled and greedy gold score, win
    rate against the policy named ``"sft"`` (when there is one; ties count half), acceptable rate
    (macro over families), hallucination rate, KL to SFT and, when given in ``seconds``
    (name -> training wall-clock), the training seconds."""
    if "sampled" not in evaluation or "greedy" not in evaluation:
        raise ValueError("evaluation must be what evaluate_policy_text returns (with 'sampled' and 'greedy')")
    seconds = seconds or {}
    rows = []
    for name, sampled in evaluation["sampled"].items():
        greedy = evaluation["greedy"][name]
        wins = {}
        for decoding, entry in (("sampled", sampled), ("greedy", greedy)):
            sft = evaluation[decoding].get("sft")
            wins[decoding] = win_rate(entry["scores"], sft["scores"]) if sft is not None else math.nan
        rows.append({"policy": name, "gold_sampled": sampled["gold_score"], "gold_greedy": greedy["gold_score"],
                     "win_vs_sft_sampled": wins["sampled"], "win_vs_sft_greedy": wins["greedy"],
                     "acceptable_sampled": sampled["table"].get("all", {}).get("acceptable", math.nan),
                     "hallucination_sampled": sampled["hallucination"], "kl_to_sft": sampled.get("kl", math.nan),
                     "train_seconds": seconds.get(name, math.nan)})
    return rows


# ----------------------------------------------------------------------------- the labs' recorded experiments

def _quiet_trainers():
    """With progress bars off (``TQDM_DISABLE=1``) transformers prints each log line of a trainer;
    the same numbers are kept in each trainer's ``info["log"]``, so those lines are dropped.
    TRL also asks the model about a deprecated attribute itself: nothing to act on."""
    import contextlib
    import io
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    return stack


def trl_comparison(scale: str | None = None, seed: int = 0) -> dict:
    """Lab 7's experiment: TRL's three trainers on the course's stages, beside ours, at ``scale``.

    * ``reward``: TRL's ``RewardTrainer`` (:func:`train_trl_reward_model`) with the reward stage's
      epochs and learning rate, 32 pairs a step, against our reward model's head (scored without
      the likelihood prior, as TRL's is a head alone): held-out accuracy, steps, seconds;
    * ``grpo``: TRL's ``GRPOTrainer`` (:func:`train_trl_grpo`) with the PPO stage's rollout
      budget, KL coefficient, learning rate and temperature, 4 answers per prompt, its reward-model
      and gold score per batch beside our PPO's (``ppo``);
    * ``dpo``: TRL's ``DPOTrainer`` (:func:`train_trl_dpo`), beta 0.1, one epoch, 32 pairs a step;
    * ``evaluation`` (:func:`evaluate_policy_text`) and ``table`` (:func:`comparison_table`): SFT,
      PPO, GRPO and DPO decoded and scored alike on the held-out prompts.
    """
    from .judge import GoldJudge
    from .ppo import ppo_policy
    from .reward import pairwise_accuracy, reward_model
    from .scale import current_scale
    from .sft import sft_model

    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed)
    _, _, rm, rm_info = reward_model(scale, seed)
    _, _, ppo, ppo_info = ppo_policy(scale, seed)
    comparisons, heldout = load_from_disk(rm_info["comparisons"]), load_from_disk(rm_info["heldout_comparisons"])
    judge = GoldJudge(world)
    folder = Path(tempfile.mkdtemp(prefix="trl-comparison-"))
    rm_cfg, cfg, ppo_log = rm_info["config"], ppo_info["config"], ppo_info["log"]
    group = 4
    with _quiet_trainers():
        _, trl_rm = train_trl_reward_model(sft, tokenizer, comparisons, heldout, epochs=rm_cfg.epochs, lr=rm_cfg.lr,
                                           batch_size=32, seed=seed, output_dir=folder / "trl_reward")
        grpo, grpo_info = train_trl_grpo(sft, tokenizer, rm, list(world.splits["rl"]), judge, steps=cfg.steps,
                                         seed=seed, prompts_per_step=cfg.prompts_per_step // group,
                                         num_generations=group, minibatch_size=cfg.minibatch_size,
                                         epochs_per_batch=cfg.ppo_epochs, max_new_tokens=cfg.max_new_tokens,
                                         beta=cfg.kl_coef, lr=cfg.lr, temperature=cfg.temperature,
                                         no_eos_penalty=cfg.no_eos_penalty, output_dir=folder / "grpo")
        dpo, dpo_info = train_trl_dpo(sft, tokenizer, comparisons, beta=0.1, epochs=1, batch_size=32, seed=seed,
                                      heldout_rows=heldout, output_dir=folder / "dpo")
    head = RewardModel(rm.model, rm.tokenizer, rm.shift, rm.scale)  # the head alone, as TRL's
    eval_tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    evaluation = evaluate_policy_text({"sft": sft, "ppo": ppo, "grpo": grpo, "dpo": dpo}, sft, tokenizer, judge,
                                      eval_tasks, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                      seed=seed + 100)
    return {
        "reward": {"ours": {"heldout_accuracy": pairwise_accuracy(head, list(heldout)),
                            "steps": len(rm_info["log"]["loss"]), "seconds": rm_info["log"]["seconds"]},
                   "trl": {key: trl_rm[key] for key in ("heldout_accuracy", "steps", "seconds")}},
        "grpo": {"batches": cfg.steps, "responses_per_batch": cfg.prompts_per_step, "group_size": group,
                 **{key: grpo_info[key] for key in ("optimizer_steps", "seconds", "rm_score", "gold_score")}},
        "ppo": {key: ppo_log[key] for key in ("seconds", "rm_score", "gold_score")},
        "dpo": {key: dpo_info[key] for key in ("steps", "n_pairs", "seconds", "loss", "heldout_implicit_accuracy")},
        "evaluation": evaluation,
        "table": comparison_table(evaluation, {"ppo": ppo_log["seconds"], "grpo": grpo_info["seconds"],
                                               "dpo": dpo_info["seconds"]}),
    }


def trl_dpo_comparison(scale: str | None = None, seed: int = 0) -> dict:
    """Lab 11's experiment: TRL's ``DPOTrainer`` (:func:`train_trl_dpo`) with the DPO stage's
    beta, epochs and learning rate, 32 pairs a step, beside our DPO stage
    (:func:`rlhf_minimal.dpo.dpo_policy`): steps, seconds, first and last loss, held-out
    implicit-reward accuracy of each, and both decoded and scored alike with SFT on the
    held-out prompts (``evaluation``, ``table``). At the ``ci`` scale TRL takes 8 steps."""
    from .dpo import dpo_policy
    from .judge import GoldJudge
    from .ppo import PPOConfig
    from .reward import reward_model
    from .scale import current_scale
    from .sft import sft_model

    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed)
    rm_info = reward_model(scale, seed)[3]
    _, _, dpo, dpo_info = dpo_policy(scale, seed)
    comparisons = load_from_disk(rm_info["comparisons"]).to_list()
    heldout = load_from_disk(rm_info["heldout_comparisons"]).to_list()
    cfg, log, ppo_cfg = dpo_info["config"], dpo_info["log"], PPOConfig.preset(scale)
    with _quiet_trainers():
        trl_dpo, trl_info = train_trl_dpo(sft, tokenizer, comparisons, beta=cfg.beta, epochs=cfg.epochs, lr=cfg.lr,
                                          batch_size=32, seed=seed, heldout_rows=heldout,
                                          output_dir=Path(tempfile.mkdtemp(prefix="trl-dpo-")),
                                          max_steps=8 if scale == "ci" else None, logging_steps=1)
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    evaluation = evaluate_policy_text({"sft": sft, "dpo (ours)": dpo, "dpo (TRL)": trl_dpo}, sft, tokenizer,
                                      GoldJudge(world), tasks, temperature=ppo_cfg.temperature,
                                      max_new_tokens=ppo_cfg.max_new_tokens, seed=seed + 100)
    return {"trl": {"steps": trl_info["steps"], "n_pairs": trl_info["n_pairs"], "seconds": trl_info["seconds"],
                    "loss": [trl_info["loss"][0], trl_info["loss"][-1]],
                    "heldout_implicit_accuracy": trl_info["heldout_implicit_accuracy"]},
            "ours": {"steps": len(log["step"]), "seconds": log["seconds"], "loss": [log["loss"][0], log["loss"][-1]],
                     "heldout_implicit_accuracy": dpo_info["evaluation"]["heldout_accuracy"]},
            "evaluation": evaluation,
            "table": comparison_table(evaluation, {"dpo (ours)": log["seconds"], "dpo (TRL)": trl_info["seconds"]})}

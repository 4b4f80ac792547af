"""Throughput of each phase, on any device: ``python -m rlhf_minimal bench`` (chapter 6).

Measured with freshly initialised networks of the scale's configuration (speed does not depend on
what the weights learned), so the benchmark needs no cache and takes seconds:

* generation tokens per second, with and without the KV cache (every row generates the full
  ``max_new_tokens``: EOS is blocked, so both runs do the same work);
* training tokens per second of pretraining, SFT and the reward model (one optimizer step on a
  batch of the stage's shape, repeated), and the time of a step at a width not seen before;
* one PPO iteration (rollout, reference and reward scoring, then the updates), in episodes per
  second and with the share of the time spent generating.

Each measurement runs once to warm up (twice with CUDA graphs: the second call records the
graph), then ``repeats`` times; GPU work is synchronised before the clock is read. Training steps
run as the stages run them: eagerly, or replayed from CUDA graphs when ``RLHF_CUDA_GRAPHS=1``
(the ``graphs`` field of the result says which).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .device import describe_environment, run_settings
from .graphs import GraphedStep, graph_training, make_graph_optimizer
from .model import GPT
from .pretrain import lm_training_step
from .sampling import generate
from .scale import check_scale
from .train import Precision, make_optimizer, set_lr


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timeit(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Seconds per call of ``fn``, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def bench(scale: str = "cpu", device=None, repeats: int = 3, seed: int = 0, echo=print) -> dict:
    """Throughput of every phase at ``scale``'s sizes on ``device``; returns a JSON-ready dict."""
    from .ppo import PolicyWithValue, PPOConfig, pad_rollout, ppo_update, rollout
    from .pretrain import PretrainConfig
    from .reward import RewardConfig, RewardModel
    from .sft import SFTConfig
    from .tokenizer import Tokenizer
    from .world import WorldConfig, make_world

    scale = check_scale(scale)
    settings = run_settings(device)
    device = settings.device
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    world = make_world(config=WorldConfig.preset(scale, seed))
    tokenizer = Tokenizer.for_world(world)
    pre_cfg, sft_cfg = PretrainConfig.preset(scale), SFTConfig.preset(scale)
    rm_cfg, ppo_cfg = RewardConfig.preset(scale), PPOConfig.preset(scale)
    model = GPT(pre_cfg.model_config(tokenizer.vocab_size)).to(device)
    precision = Precision(device, settings.precision)
    graphs = graph_training(settings, precision)
    warmup = 2 if graphs else 1
    result = {"scale": scale, "device": str(device), "precision": precision.name, "graphs": graphs,
              "environment": describe_environment(), "parameters": model.num_parameters(),
              "repeats": repeats}

    # generation, with and without the KV cache
    batch, new = ppo_cfg.prompts_per_step, ppo_cfg.max_new_tokens
    rl_tasks = list(world.splits["rl"])
    tasks = [rl_tasks[i % len(rl_tasks)] for i in range(batch)]  # real prompts, as PPO sees them
    prompts = [tokenizer.encode(t.prompt) for t in tasks]
    new = min(new, model.config.max_len - max(map(len, prompts)))
    gen = {}
    for use_cache in (True, False):
        def run(use_cache=use_cache):
            generate(model, prompts, new, tokenizer.eos_id, tokenizer.pad_id, temperature=1.0,
                     generator=torch.Generator(device=device).manual_seed(seed), use_cache=use_cache,
                     min_new_tokens=new, graphs=settings.cuda_graphs)
        seconds = _timeit(run, device, repeats)
        gen["with_cache" if use_cache else "without_cache"] = {
            "seconds": round(seconds, 4), "tokens_per_second": round(batch * new / seconds, 1)}
    gen["kv_cache_speedup"] = round(gen["without_cache"]["seconds"] / gen["with_cache"]["seconds"], 2)
    gen.update(batch=batch, new_tokens=new)
    result["generation"] = gen
    echo(f"generation: {gen['with_cache']['tokens_per_second']:.0f} tokens/s with the KV cache, "
         f"{gen['without_cache']['tokens_per_second']:.0f} without ({gen['kv_cache_speedup']}x)")

    # one optimizer step of each supervised stage, on batches of the stage's shape
    def train_step_bench(name, net, batch_size, length, loss_fn):
        step, optimizer = lm_training_step(net, make_optimizer(net, 1e-4), precision, graphs, loss_fn=loss_fn)
        x = torch.randint(2, tokenizer.vocab_size, (batch_size, length), generator=generator).to(device)

        def train_step(_, lr, x):
            set_lr(optimizer, lr)
            return step(x[:, :-1], x[:, 1:])
        seconds = _timeit(lambda: train_step(0, 1e-4, x), device, repeats * 3, warmup)
        # The stages' batches vary in width (SFT, reward model) or in prompt length (PPO); a GPU
        # library may prepare each new shape once (kernel choice, plans), which a repeated batch
        # never shows. So also time single steps at eight widths not seen before.
        def new_widths(widths):
            _sync(device)
            start = time.perf_counter()
            for width in widths:
                train_step(0, 1e-4, x[:, :width])
            _sync(device)
            return (time.perf_counter() - start) / len(widths)
        new_shape = new_widths(range(length - 8, length))
        row = {"seconds_per_step": round(seconds, 5), "batch": batch_size, "length": length,
               "tokens_per_second": round(batch_size * length / seconds, 1),
               "seconds_per_step_new_width": round(new_shape, 5)}
        if device.type == "cuda":  # what cuDNN's attention, off in the package, would cost
            torch.backends.cuda.enable_cudnn_sdp(True)
            try:
                row["seconds_per_step_new_width_with_cudnn_attention"] = round(
                    new_widths(range(length - 16, length - 8)), 5)
            finally:
                torch.backends.cuda.enable_cudnn_sdp(False)
        echo(f"{name}: {row['tokens_per_second']:.0f} tokens/s ({1 / seconds:.1f} steps/s; "
             f"a step at a new width {1000 * new_shape:.1f} ms against {1000 * seconds:.1f} ms)")
        return row

    from .model import lm_loss

    result["training"] = {
        "pretrain": train_step_bench("pretraining", model.train(), pre_cfg.batch_size, pre_cfg.window, lm_loss),
        "sft": train_step_bench("SFT", model.train(), sft_cfg.batch_size, 40, lm_loss),
    }
    rm_net = model.with_scalar_head().train()
    k = rm_cfg.k

    def rm_loss(values, _):  # the first of each prompt's k responses preferred to the others
        rewards = values[:, -1].view(-1, k)
        return -torch.nn.functional.logsigmoid(rewards[:, :1] - rewards[:, 1:]).mean()
    result["training"]["reward"] = train_step_bench("reward model", rm_net, rm_cfg.prompts_per_batch * k, 41, rm_loss)

    # one PPO iteration: rollout (generation + scoring) and the updates
    rm = RewardModel(rm_net.eval(), tokenizer)
    policy = PolicyWithValue(model.eval(), ppo_cfg.value_model).to(device)
    ref = GPT(model.config).to(device).eval()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=ppo_cfg.lr,
                                  fused=True if device.type == "cuda" else None)
    graphed = None
    if graphs:
        optimizer, graphed = make_graph_optimizer(optimizer), GraphedStep(None, device)
    sampler = torch.Generator(device=device).manual_seed(seed)
    timings = {"rollout": 0.0, "update": 0.0}
    fixed = (max(map(len, prompts)), new)  # one shape for every rollout, as train_ppo pads with graphs

    def ppo_iteration():
        _sync(device)
        t0 = time.perf_counter()
        batch_ = rollout(policy, ref, rm, tokenizer, tasks, ppo_cfg, ppo_cfg.kl_coef, sampler,
                         prompt_width=fixed[0] if graphs else None, graphs=settings.cuda_graphs)
        if graphs:
            batch_ = pad_rollout(batch_, *fixed, tokenizer.pad_id)
        _sync(device)
        t1 = time.perf_counter()
        ppo_update(policy, optimizer, batch_, ppo_cfg, generator, 0, precision, graphed=graphed)
        _sync(device)
        timings["rollout"] += t1 - t0
        timings["update"] += time.perf_counter() - t1
    seconds = _timeit(ppo_iteration, device, repeats)  # one warm-up iteration records the graphs
    share = timings["rollout"] / (timings["rollout"] + timings["update"])
    result["ppo_iteration"] = {"seconds": round(seconds, 4), "episodes": batch,
                               "episodes_per_second": round(batch / seconds, 1),
                               "rollout_share": round(share, 3)}
    echo(f"PPO: {batch / seconds:.1f} episodes/s, {100 * share:.0f}% of the time in the rollout")
    return result


def write(result: dict, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

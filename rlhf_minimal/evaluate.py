"""Evaluation: generate responses to world prompts, score them with the gold judge, and compare
policies (win rates with ties counting half, KL to a reference, best-of-n baselines). Every stage
after pretraining evaluates through this module; it trains nothing.
"""
from __future__ import annotations

import math

import torch

from .judge import GoldJudge, summarize_verdicts
from .model import GPT
from .sampling import generate, left_pad, token_logprobs
from .tokenizer import Tokenizer
from .world import Task


def win_share(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The share of entries where ``a`` beats ``b``, a tie counting half (a 0-dim tensor, in
    float64 for float64 inputs, else float32)."""
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    return ((a > b).to(dtype) + 0.5 * (a == b).to(dtype)).mean()


def win_rate(scores_a: list[float], scores_b: list[float]) -> float:
    """Share of prompts on which A's gold score beats B's; a tie counts half (rounded to 4 places)."""
    if len(scores_a) != len(scores_b) or not scores_a:
        raise ValueError("win_rate needs two equally long, non-empty lists of scores (one per prompt)")
    a, b = torch.tensor(scores_a, dtype=torch.float64), torch.tensor(scores_b, dtype=torch.float64)
    return round(win_share(a, b).item(), 4)


def generate_responses(model: GPT, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int = 48,
                       temperature: float = 0.0, batch_size: int = 128, seed: int = 0,
                       top_k: int | None = None, top_p: float | None = None,
                       min_new_tokens: int = 0, graphs: bool = False) -> list[str]:
    """The text each prompt is continued with, up to EOS (greedy by default)."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    responses = []
    for start in range(0, len(prompts), batch_size):
        chunk = [tokenizer.encode(p) for p in prompts[start:start + batch_size]]
        room = model.config.max_len - max(len(c) for c in chunk)
        _, _, out = generate(model, chunk, min(max_new_tokens, room), tokenizer.eos_id,
                             tokenizer.pad_id, temperature, top_k, top_p, generator,
                             min_new_tokens=min_new_tokens, graphs=graphs)
        responses += [tokenizer.decode(row) for row in out.tolist()]
    return responses


def gold_evaluation(model: GPT, tokenizer: Tokenizer, judge: GoldJudge, tasks: list[Task],
                    **generate_kwargs) -> dict:
    """Responses, verdicts and the per-family summary table for ``tasks``."""
    responses = generate_responses(model, tokenizer, [t.prompt for t in tasks], **generate_kwargs)
    verdicts = judge.score_many(tasks, responses)
    return {"responses": responses, "verdicts": verdicts, "table": summarize_verdicts(tasks, verdicts)}


_PROBE_PREFIX = {"color": "the {x} is", "size": "the {x} is", "food": "the {x} eats",
                 "home": "the {x} lives in the"}


@torch.no_grad()
def fact_probe(model: GPT, tokenizer: Tokenizer, world) -> dict:
    """Does the model know the facts? For every creature and attribute, feed the start of the fact
    sentence ("the bimo eats") and check that, among that attribute's values, the model gives the
    true one the highest probability. Returns accuracy per attribute and overall (chance: 1/8
    for colour, home and food, 1/4 for size)."""
    from .world import ATTRIBUTES

    device = next(model.parameters()).device
    model.eval()
    hits = {a: 0 for a in ATTRIBUTES}
    names = list(world.facts)
    for attribute, values in ATTRIBUTES.items():
        prompts = [tokenizer.encode(_PROBE_PREFIX[attribute].format(x=n)) for n in names]
        ids = torch.tensor(prompts, device=device)  # same length for every creature
        logits = model(ids)[:, -1, :]
        value_ids = torch.tensor([tokenizer.stoi[v] for v in values], device=device)
        picked = logits[:, value_ids].argmax(-1).tolist()
        hits[attribute] = sum(values[p] == world.facts[n][attribute] for p, n in zip(picked, names))
    accuracy = {a: round(h / len(names), 4) for a, h in hits.items()}
    accuracy["all"] = round(sum(hits.values()) / (len(names) * len(ATTRIBUTES)), 4)
    return accuracy


def answer_habits(verdicts: list) -> dict:
    """How often answers are acceptable, carry filler, or state something false."""
    n = max(len(verdicts), 1)
    return {"acceptable": round(sum(v.acceptable for v in verdicts) / n, 4),
            "filler": round(sum("filler" in v.notes for v in verdicts) / n, 4),
            "false": round(sum(v.truthful == 0 for v in verdicts) / n, 4)}


def side_by_side(tasks: list[Task], responses: dict, verdicts: dict | None = None):
    """A table (pandas DataFrame) of prompts and each model's response, with ✓ for acceptable."""
    import pandas as pd

    table = {"family": [t.family for t in tasks], "prompt": [t.prompt.strip() for t in tasks]}
    for name, texts in responses.items():
        marks = [("✓ " if v.acceptable else "✗ ") for v in verdicts[name]] if verdicts else [""] * len(texts)
        table[name] = [m + r.replace("\n", " ⏎ ") for m, r in zip(marks, texts)]
    return pd.DataFrame(table)


# --------------------------------------------------------------------------- comparing policies
@torch.no_grad()
def best_of_n(model: GPT, rm, tokenizer, tasks: list[Task], n: int, temperature: float = 1.0,
              max_new_tokens: int = 40, seed: int = 0, batch_size: int = 256) -> dict:
    """Best-of-n: sample ``n`` responses per prompt, keep the one the reward model scores highest.

    Returns the chosen responses, their reward-model scores, and the analytic KL of the best-of-n
    distribution to the sampling policy, ``log n - (n - 1) / n`` (Stiennon et al., 2020).
    """
    prompts = [t.prompt for t in tasks for _ in range(n)]
    flat = generate_responses(model, tokenizer, prompts, max_new_tokens, temperature=temperature,
                              batch_size=batch_size, seed=seed)
    scores = rm.score(prompts, flat).view(len(tasks), n)
    best = scores.argmax(-1).tolist()
    return {"responses": [flat[i * n + b] for i, b in enumerate(best)],
            "rm_scores": scores.max(-1).values.tolist(),
            "all_responses": [flat[i * n:(i + 1) * n] for i in range(len(tasks))],
            "all_rm_scores": scores.tolist(), "kl": math.log(n) - (n - 1) / n}


def best_of_first(bon: dict, n: int) -> dict:
    """From one :func:`best_of_n` draw, best-of-``n`` for a smaller ``n``: per prompt, the response
    the reward model scores highest among the first ``n`` samples, and the analytic KL."""
    if not 1 <= n <= len(bon["all_rm_scores"][0]):
        raise ValueError(f"best_of_first: n must be between 1 and the {len(bon['all_rm_scores'][0])} "
                         f"samples drawn per prompt, got {n}")
    picks = [max(range(n), key=lambda j: scores[j]) for scores in bon["all_rm_scores"]]
    return {"responses": [bon["all_responses"][i][j] for i, j in enumerate(picks)],
            "rm_scores": [bon["all_rm_scores"][i][j] for i, j in enumerate(picks)],
            "kl": math.log(n) - (n - 1) / n}


def best_of_n_curve(bon: dict, tasks: list[Task], judge: GoldJudge, ns=(1, 2, 4, 8, 16)) -> dict:
    """From one :func:`best_of_n` draw, best-of-n for every n in ``ns`` (the best of the first n
    samples): mean reward-model score and gold score of the picks, and the analytic KL."""
    curve = {"n": list(ns), "kl": [], "rm_score": [], "gold_score": []}
    for n in ns:
        pick = best_of_first(bon, n)
        curve["kl"].append(pick["kl"])
        curve["rm_score"].append(sum(pick["rm_scores"]) / len(tasks))
        curve["gold_score"].append(sum(v.score for v in judge.score_many(tasks, pick["responses"])) / len(tasks))
    return curve


@torch.no_grad()
def response_logprobs(model: GPT, tokenizer, prompts: list[str], responses: list[str],
                      temperature: float = 1.0, batch_size: int = 128) -> tuple[list[float], list[int]]:
    """Per response: ``sum_t log pi(y_t)`` over its tokens and EOS under ``model`` (at
    ``temperature``), and its number of tokens."""
    device = next(model.parameters()).device
    sums, lengths = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        prompt_ids, prompt_mask = left_pad([tokenizer.encode(prompts[i]) for i in chunk], tokenizer.pad_id, device)
        answers = [tokenizer.encode(responses[i]) + [tokenizer.eos_id] for i in chunk]
        width = max(len(a) for a in answers)
        response = torch.full((len(answers), width), tokenizer.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(response)
        for row, a in enumerate(answers):
            if prompt_ids.size(1) + len(a) > model.config.max_len:
                a = a[:-1]  # the response filled the context: it ended without EOS
            response[row, :len(a)] = torch.tensor(a, device=device)
            mask[row, :len(a)] = 1
        ids, attn = torch.cat([prompt_ids, response], 1), torch.cat([prompt_mask, mask], 1)
        P = prompt_ids.size(1)
        lp = token_logprobs(model(ids, attn)[:, P - 1:-1], response, temperature)
        sums += (lp * mask).sum(-1).tolist()
        lengths += mask.sum(-1).tolist()
    return sums, lengths


def sequence_kl(policy: GPT, ref: GPT, tokenizer, tasks: list[Task], responses: list[str],
                temperature: float = 1.0, batch_size: int = 128) -> list[float]:
    """Per response: ``sum_t log pi(y_t) - log pi_ref(y_t)`` over its tokens and EOS. Averaged over
    responses sampled from ``policy``, this estimates KL(pi || pi_ref) in nats."""
    prompts = [t.prompt for t in tasks]
    logprobs, _ = response_logprobs(policy, tokenizer, prompts, responses, temperature, batch_size)
    ref_logprobs, _ = response_logprobs(ref, tokenizer, prompts, responses, temperature, batch_size)
    return [a - b for a, b in zip(logprobs, ref_logprobs)]


def made_up_answer(verdict) -> bool:
    """The verdict of an unanswerable question that was answered anyway."""
    return any(n == "made up an answer" or n.startswith("claim about the non-existent") for n in verdict.notes)


def head_to_head(tasks: list[Task], verdicts_a: list, verdicts_b: list) -> dict:
    """Win rate of A over B on the gold judge, prompt by prompt (:func:`win_rate`), with the counts."""
    wins = sum(a.score > b.score for a, b in zip(verdicts_a, verdicts_b))
    ties = sum(a.score == b.score for a, b in zip(verdicts_a, verdicts_b))
    rate = win_rate([a.score for a in verdicts_a], [b.score for b in verdicts_b]) if tasks else 0.0
    return {"win_rate": rate, "wins": wins, "ties": ties, "losses": len(tasks) - wins - ties}


def gold_entry(tasks: list[Task], responses: list[str], judge: GoldJudge) -> dict:
    """Responses with their verdicts, the per-family table, the mean gold score and the
    hallucination rate on unanswerable prompts."""
    verdicts = judge.score_many(tasks, responses)
    unanswerable = [v for t, v in zip(tasks, verdicts) if t.family == "unanswerable"]
    return {"responses": responses, "verdicts": verdicts, "table": summarize_verdicts(tasks, verdicts),
            "gold_score": round(sum(v.score for v in verdicts) / len(verdicts), 4),
            "hallucination": round(sum(map(made_up_answer, unanswerable)) / max(len(unanswerable), 1), 4)}


def compare_policies(models: dict, judge: GoldJudge, tokenizer, tasks: list[Task], ref: GPT,
                     temperature: float = 1.0, max_new_tokens: int = 40, seed: int = 0) -> dict:
    """Decode every model the same way, sampled (``temperature``, as in training) and greedy;
    score with the gold judge. Returns, per decoding and model: responses, verdicts, the per-family
    table, the hallucination rate on unanswerable prompts and the mean KL to ``ref`` (sampled)."""
    out = {}
    for decoding, temp in (("sampled", temperature), ("greedy", 0.0)):
        out[decoding] = {}
        for name, model in models.items():
            responses = generate_responses(model, tokenizer, [t.prompt for t in tasks], max_new_tokens,
                                           temperature=temp, seed=seed)
            entry = gold_entry(tasks, responses, judge)
            if decoding == "sampled":
                kls = sequence_kl(model, ref, tokenizer, tasks, responses, temperature)
                entry["kl"] = round(sum(kls) / len(kls), 4)
            out[decoding][name] = entry
    return out




BEST_OF = (4, 16)  # the best-of-n baselines of every evaluation, all from one draw of max(BEST_OF)


def evaluate_ppo(policy: GPT, sft: GPT, rm, tokenizer, world, cfg, seed: int = 0,
                 best_of: tuple[int, ...] = BEST_OF) -> dict:
    """SFT, PPO and best-of-n for each n in ``best_of`` on the held-out evaluation prompts
    (language A), sampled and greedy, as JSON-ready numbers plus the responses. ``cfg`` is the
    :class:`~rlhf_minimal.ppo.PPOConfig` (its temperature and response length).

    Every best-of-n comes from one draw of ``max(best_of)`` samples per prompt: best-of-4 is the
    reward model's pick among the first 4 of the 16. Best-of-4 sits about as far from SFT
    (0.64 nats) as a PPO run with a modest KL penalty, so it is the fair baseline to set beside
    PPO; best-of-16 (1.83 nats) shows what leaning harder on the reward model does.
    """
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    judge = GoldJudge(world)
    result = compare_policies({"sft": sft, "ppo": policy}, judge, tokenizer, tasks, sft,
                              cfg.temperature, cfg.max_new_tokens, seed + 100)
    bon = best_of_n(sft, rm, tokenizer, tasks, max(best_of), cfg.temperature, cfg.max_new_tokens, seed + 200)
    for n in sorted(best_of):
        pick = best_of_first(bon, n)
        result["sampled"][f"best_of_{n}"] = {**gold_entry(tasks, pick["responses"], judge),
                                             "kl": round(pick["kl"], 4)}
    return {"n_prompts": len(tasks), "prompts": [t.prompt for t in tasks],
            "families": [t.family for t in tasks], **against_sft(result, tasks)}


def scores_only(entry: dict) -> dict:
    """``entry`` (of :func:`gold_entry`) with its verdicts replaced by their gold scores (JSON-ready)."""
    entry["scores"] = [v.score for v in entry.pop("verdicts")]
    return entry


def against_sft(result: dict, tasks: list[Task]) -> dict:
    """:func:`compare_policies`' ``result`` with every model's :func:`head_to_head` against the
    model named ``"sft"`` added, and verdicts replaced by scores (:func:`scores_only`)."""
    for models in result.values():
        sft_verdicts = models["sft"]["verdicts"]
        for entry in models.values():
            entry["head_to_head_vs_sft"] = head_to_head(tasks, entry["verdicts"], sft_verdicts)
            scores_only(entry)
    return result

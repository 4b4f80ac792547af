"""Generate responses to world prompts and score them with the gold judge."""
from __future__ import annotations

import torch

from .judge import GoldJudge, summarize_verdicts
from .model import GPT, generate
from .tokenizer import Tokenizer
from .world import Task


def generate_responses(model: GPT, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int = 48,
                       temperature: float = 0.0, batch_size: int = 128, seed: int = 0,
                       top_k: int | None = None, top_p: float | None = None,
                       min_new_tokens: int = 0) -> list[str]:
    """The text each prompt is continued with, up to EOS (greedy by default)."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    responses = []
    for start in range(0, len(prompts), batch_size):
        chunk = [tokenizer.encode(p) for p in prompts[start:start + batch_size]]
        room = model.config.max_len - max(len(c) for c in chunk)
        _, _, out = generate(model, chunk, min(max_new_tokens, room), tokenizer.eos_id,
                             tokenizer.pad_id, temperature, top_k, top_p, generator,
                             min_new_tokens=min_new_tokens)
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

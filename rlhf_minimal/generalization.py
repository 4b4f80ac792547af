"""Does following instructions transfer to a language the fine-tuning data barely has?

InstructGPT followed instructions in French and in code although nearly all of its fine-tuning
data was English. Our world has a rare second language, B: a few percent of pretraining documents
and about 1% of demonstrations, and no reward-model or RL prompt at all. Here every held-out
evaluation prompt is asked twice, in A and translated into B, and base, SFT and PPO are scored by
the gold judge (which reads answers in either language). We also record *which* language each
answer is in: an answer in A to a question in B is scored on its content, but it is a sign that
the model understood the question without following its form.
"""
from __future__ import annotations

from dataclasses import replace

from .evaluate import generate_responses
from .judge import GoldJudge, summarize_verdicts
from .world import Task


def in_language_b(world, tasks: list[Task]) -> list[Task]:
    """The same tasks with their instruction translated into language B."""
    return [replace(t, prompt=world.translate_to_b(t.prompt.rstrip("\n")) + "\n", lang="b") for t in tasks]


def answer_language(world, response: str) -> str:
    """``"b"`` if most of the answer's language-specific words are B words, ``"a"`` if most are A
    words, ``"none"`` when it has none (names, punctuation and numbers belong to both)."""
    b_words = set(world.to_b.values())
    a_words = set(world.to_b) - b_words
    words = response.split()
    n_b = sum(w in b_words for w in words)
    n_a = sum(w in a_words for w in words)
    if n_a == n_b == 0:
        return "none"
    return "b" if n_b > n_a else "a"


def score_in_both_languages(models: dict, world, tokenizer, tasks: list[Task], temperature: float = 0.0,
                            max_new_tokens: int = 40, seed: int = 0) -> dict:
    """For each model and language: gold score, acceptable rate, per-family table, the share of
    answers in language B, and a few example answers."""
    judge = GoldJudge(world)
    sets = {"a": [t for t in tasks if t.lang == "a"]}
    sets["b"] = in_language_b(world, sets["a"])
    out = {}
    for name, model in models.items():
        out[name] = {}
        for lang, ts in sets.items():
            responses = generate_responses(model, tokenizer, [t.prompt for t in ts], max_new_tokens,
                                           temperature=temperature, seed=seed)
            verdicts = judge.score_many(ts, responses)
            table = summarize_verdicts(ts, verdicts)
            out[name][lang] = {
                "gold_score": round(sum(v.score for v in verdicts) / len(verdicts), 4),
                "acceptable": round(sum(v.acceptable for v in verdicts) / len(verdicts), 4),
                "answers_in_b": round(sum(answer_language(world, r) == "b" for r in responses) / len(responses), 4),
                "table": table,
                "examples": [(t.prompt, r) for t, r in list(zip(ts, responses))[:6]],
            }
    return out


def generalization_study(scale: str | None = None, seed: int = 0, device=None) -> dict:
    """Base, SFT and PPO (cached stages) on the held-out prompts in A and in B, greedy and sampled;
    with the share of each stage's training prompts that were in B."""
    from .ppo import PPOConfig, ppo_policy
    from .pretrain import base_model
    from .sft import sft_model

    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    base = base_model(scale, seed, device=device)[2]
    _, _, ppo, info = ppo_policy(scale, seed, device=device)
    cfg = info["config"] if isinstance(info["config"], PPOConfig) else PPOConfig()
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    share = {split: round(sum(t.lang == "b" for t in ts) / max(len(ts), 1), 4) for split, ts in world.splits.items()}
    models = {"base": base, "sft": sft, "ppo": ppo}
    return {"share_of_prompts_in_b": share,
            "greedy": score_in_both_languages(models, world, tokenizer, tasks, 0.0, cfg.max_new_tokens, seed + 300),
            "sampled": score_in_both_languages(models, world, tokenizer, tasks, cfg.temperature,
                                               cfg.max_new_tokens, seed + 300)}

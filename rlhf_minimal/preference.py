"""Preference data: K responses per prompt, simulated labelers that rank them, and pairs.

As in InstructGPT, the SFT model writes K responses to each reward-modelling prompt
(:func:`sample_k`), a labeler ranks them, and a ranking of K expands to its K-choose-2
(chosen, rejected) comparisons (:func:`ranking_to_pairs`).

**Simulated labelers** (:class:`SimulatedLabeler`) stand in for people. A labeler reads the gold
judge's score of each response under *its* guideline priority order, adds its own small bias
(a taste for longer or shorter answers, per word) and perceives each response's utility as
``score / temperature + Gumbel noise``; it ranks by perceived utility. This is a Plackett-Luce
ranking, whose pairwise marginals are Bradley-Terry: ``P(i over j) = sigmoid((s_i - s_j) / T)``.

**Ties.** Identical responses are merged before ranking (a response is never compared with
itself). Responses whose scores the labeler cannot tell apart (equal gold scores, for example two
different correct answers) share a rank: the labeler marks them as a tie, and a tie yields no
comparison. So every pair says "this one is better" and the gold order is defined on it.

**Agreement and the ceiling.** :func:`agreement` measures how often two labelers order the same
pair the same way, and how often labels agree with the gold order. The **ceiling** is the
accuracy on held-out labels of the best possible reward model: the one that knows each
labeler's noiseless utility. No reward model trained on these labels can expect to beat it.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import torch
from datasets import Dataset

from .data import DataError, validate
from .evaluate import generate_responses
from .judge import DECLINE_HELPFULNESS, DEFAULT_PRIORITY, FILLER_FACTOR, GoldJudge
from .world import Task


def sample_k(model, tokenizer, tasks: list[Task], k: int, temperature: float = 1.0,
             max_new_tokens: int = 48, seed: int = 0, batch_size: int = 256) -> list[list[str]]:
    """K sampled responses for each task (``k`` from 2 to 9, as in InstructGPT). Responses are
    never empty (EOS cannot come first): a labeler cannot compare an empty answer."""
    if not 2 <= k <= 9:
        raise ValueError(f"K must be between 2 and 9 (InstructGPT's range), got {k}")
    prompts = [t.prompt for t in tasks for _ in range(k)]
    flat = generate_responses(model, tokenizer, prompts, max_new_tokens, temperature=temperature,
                              batch_size=batch_size, seed=seed, min_new_tokens=1)
    return [flat[i * k:(i + 1) * k] for i in range(len(tasks))]


def ranking_to_pairs(ranking: list[list[int]]) -> list[tuple[int, int]]:
    """Expand a ranking with ties into (better, worse) index pairs.

    ``ranking`` lists groups from best to worst; members of one group are tied. A strict ranking
    of K responses gives K*(K-1)/2 pairs; tied members give none.
    """
    pairs = []
    for hi, better in enumerate(ranking):
        for worse in ranking[hi + 1:]:
            pairs += [(b, w) for b in better for w in worse]
    return pairs


@dataclass
class SimulatedLabeler:
    """A noisy rater with its own taste, following a guideline priority order.

    Its noiseless utility is the gold score under its priorities with two matters of taste
    changed: how much filler costs (``filler_factor``, the share of helpfulness a filler-padded
    answer keeps; the judge's is 0.6) and a per-word ``length_bias``. It perceives
    ``utility / temperature + Gumbel noise`` and ranks by that (Plackett-Luce).
    """

    labeler_id: int
    judge: GoldJudge
    temperature: float = 0.5
    length_bias: float = 0.0          # added to the utility per word of the response
    rng: random.Random = field(default_factory=random.Random)
    filler_factor: float = FILLER_FACTOR
    decline_value: float = DECLINE_HELPFULNESS

    def taste(self, task: Task, response: str) -> float:
        """The gold score under this labeler's priorities, with its own price of filler and its
        own value of declining ("i do not know .", "i can not help with that .")."""
        verdict = self.judge.score(task, response)
        score = verdict.score
        if "filler" in verdict.notes:
            score += (self.filler_factor - FILLER_FACTOR) * verdict.helpful / FILLER_FACTOR
        if "declined" in verdict.notes:
            score += self.decline_value - DECLINE_HELPFULNESS
        return score

    def utility(self, task: Task, response: str) -> float:
        """Noiseless utility: :meth:`taste` plus the length bias."""
        return self.taste(task, response) + self.length_bias * len(response.split())

    def rank(self, task: Task, responses: list[str]) -> list[list[int]]:
        """Rank the distinct responses, best first; equal tastes are ties (see the module doc)."""
        distinct = list(dict.fromkeys(responses))
        first_index = [responses.index(r) for r in distinct]
        scores = [round(self.taste(task, r), 6) for r in distinct]
        bias = [self.length_bias * len(r.split()) for r in distinct]
        groups: dict[float, list[int]] = {}
        for i, s in zip(first_index, scores):
            groups.setdefault(s, []).append(i)
        # each tie group is perceived once, with the Gumbel noise of a Plackett-Luce draw
        perceived = []
        for s, members in groups.items():
            b = sum(bias[first_index.index(m)] for m in members) / len(members)
            gumbel = -math.log(-math.log(self.rng.random() or 1e-12))
            perceived.append(((s + b) / self.temperature + gumbel, members))
        perceived.sort(key=lambda x: -x[0])
        return [members for _, members in perceived]

    def ranks(self, task: Task, responses: list[str]) -> list[int]:
        """The rank (1 = best) this labeler gives each response; duplicates share a rank."""
        groups = self.rank(task, responses)
        rank_of = {responses[m]: place + 1 for place, group in enumerate(groups) for m in group}
        return [rank_of[r] for r in responses]


def make_labelers(judge_world, n: int = 5, priority=DEFAULT_PRIORITY, temperature: float = 0.5,
                  bias_std: float = 0.01, seed: int = 0,
                  filler_range: tuple[float, float] | None = None,
                  decline_range: tuple[float, float] | None = None) -> list[SimulatedLabeler]:
    """A team of ``n`` labelers with the same guidelines, each with its own length bias
    (normal, ``bias_std`` per word) and, when the ranges are given, its own price of filler and
    value of declining. Tastes are spread evenly over each range (so the team's average taste is
    the range's middle, whatever ``n``) and dealt to the labelers in a random order."""
    judge = GoldJudge(judge_world, priority)
    rng = random.Random(f"labelers-{seed}")

    def spread(bounds, default):
        if bounds is None:
            return [default] * n
        lo, hi = bounds
        values = [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
        rng.shuffle(values)
        return values

    biases = [rng.gauss(0.0, bias_std) for _ in range(n)]
    fillers, declines = spread(filler_range, FILLER_FACTOR), spread(decline_range, DECLINE_HELPFULNESS)
    team = [SimulatedLabeler(i, judge, temperature, biases[i], random.Random(f"labeler-{seed}-{i}"),
                             fillers[i], declines[i]) for i in range(n)]
    return team


def label(tasks: list[Task], responses: list[list[str]], labelers: list[SimulatedLabeler],
          seed: int = 0, votes: int = 1) -> list[dict]:
    """Each prompt's K responses ranked by ``votes`` labelers of the team (assigned round robin
    after a shuffle, never the same labeler twice on one prompt).

    With one vote every pair of a ranking is a comparison. With several, a pair's label is the
    majority of the labelers who ordered it (a labeler who tied the two abstains); a split vote
    gives no comparison. Returns comparison rows: prompt, chosen, rejected, plus the first
    voter's ranking (JSON), the first voter's id (``labeler``), every voter's id (``voters``),
    how many voters chose ``chosen`` and how many ordered the pair (``vote``, e.g. ``"2/3"``),
    the prompt index and the task (JSON).
    """
    import json

    if not 1 <= votes <= len(labelers):
        raise ValueError(f"votes must be between 1 and the team's {len(labelers)} labelers, got {votes}")
    rng = random.Random(f"assign-{seed}")
    order = list(range(len(tasks)))
    rng.shuffle(order)
    rows = []
    for slot, i in enumerate(order):
        voters = [labelers[(slot * votes + v) % len(labelers)] for v in range(votes)]
        rankings = [voter.rank(tasks[i], responses[i]) for voter in voters]
        tally: dict[tuple[int, int], list[int]] = {}  # (a, b) with a < b -> [votes for a, voters]
        for ranking in rankings:
            for better, worse in ranking_to_pairs(ranking):
                count = tally.setdefault((min(better, worse), max(better, worse)), [0, 0])
                count[0] += better < worse
                count[1] += 1
        for (a, b), (for_a, total) in tally.items():
            if 2 * for_a == total:
                continue  # a split vote
            chosen, rejected, won = (a, b, for_a) if 2 * for_a > total else (b, a, total - for_a)
            rows.append({"prompt": tasks[i].prompt, "chosen": responses[i][chosen],
                         "rejected": responses[i][rejected], "ranking": json.dumps(rankings[0]),
                         "labeler": voters[0].labeler_id, "voters": [v.labeler_id for v in voters],
                         "vote": f"{won}/{total}", "prompt_id": i, "task": tasks[i].to_json()})
    rows.sort(key=lambda r: r["prompt_id"])
    return rows


def comparisons_dataset(rows: list[dict]) -> Dataset:
    validate_comparisons(rows)
    return Dataset.from_list(rows)


def validate_comparisons(rows) -> None:
    """Every row has non-empty prompt, chosen and rejected, and chosen differs from rejected."""
    validate(rows, ("prompt", "chosen", "rejected"))
    for i, row in enumerate(rows):
        if row["chosen"] == row["rejected"]:
            raise DataError(f"row {i}: chosen and rejected are the same text ({row['chosen']!r}); "
                            "a comparison needs two different responses")


def agreement(tasks: list[Task], responses: list[list[str]], labelers: list[SimulatedLabeler],
              gold: GoldJudge) -> dict:
    """Labeler-labeler agreement, labeler-gold agreement and the ceiling, on the same prompts.

    Every labeler ranks every prompt's responses. For each pair ordered by two labelers we count
    whether they agree; for each labeled pair whether the label follows the gold order (the
    judge's default priorities) and whether it follows the labeler's own noiseless utility (the
    ceiling: the accuracy of the best possible reward model on these labels).
    """
    together = agree = gold_total = gold_agree = ceiling_total = ceiling_agree = 0
    for task, resp in zip(tasks, responses):
        labels = []
        for labeler in labelers:
            pairs = ranking_to_pairs(labeler.rank(task, resp))
            labels.append({frozenset(p): p for p in pairs})
            utilities = {i: labeler.utility(task, resp[i]) for i in range(len(resp))}
            gold_scores = {i: gold.score(task, resp[i]).score for i in range(len(resp))}
            for better, worse in pairs:
                if gold_scores[better] != gold_scores[worse]:
                    gold_total += 1
                    gold_agree += gold_scores[better] > gold_scores[worse]
                ceiling_total += 1
                ceiling_agree += utilities[better] > utilities[worse]
        for a, b in itertools.combinations(labels, 2):
            for key in a.keys() & b.keys():
                together += 1
                agree += a[key] == b[key]
    return {"labeler_labeler": round(agree / max(together, 1), 4),
            "labeler_gold": round(gold_agree / max(gold_total, 1), 4),
            "ceiling": round(ceiling_agree / max(ceiling_total, 1), 4),
            "pairs_compared": together, "pairs_labeled": ceiling_total}


def labeling_seconds(k: int, read_prompt: float = 30.0, read_response: float = 20.0,
                     compare: float = 5.0) -> float:
    """The cost model of lab 3: reading the prompt, reading K responses, and sorting them with
    about K log2 K comparisons."""
    return read_prompt + k * read_response + compare * k * math.log2(k)


def label_quality(rows, labelers: list[SimulatedLabeler], gold: GoldJudge) -> dict:
    """On these labeled pairs: the ceiling (share whose label follows the noiseless utility of the
    labeler who gave it, or with several voters the majority of their noiseless utilities: the
    expected accuracy of a perfect reward model on them; a split counts half) and the share that
    follows the gold order (pairs with equal gold scores left out)."""
    by_id = {lab.labeler_id: lab for lab in labelers}
    ceiling = gold_hits = gold_total = 0.0
    for row in rows:
        task = Task.from_json(row["prompt"], row["task"])
        voters = [by_id[v] for v in row.get("voters") or [row["labeler"]]]
        margin = sum((lab.utility(task, row["chosen"]) > lab.utility(task, row["rejected"]))
                     - (lab.utility(task, row["chosen"]) < lab.utility(task, row["rejected"])) for lab in voters)
        ceiling += 1.0 if margin > 0 else 0.5 if margin == 0 and len(voters) > 1 else 0.0
        g_chosen, g_rejected = gold.score(task, row["chosen"]).score, gold.score(task, row["rejected"]).score
        if g_chosen != g_rejected:
            gold_total += 1
            gold_hits += g_chosen > g_rejected
    n = max(len(rows), 1)
    return {"ceiling": round(ceiling / n, 4), "labels_follow_gold": round(gold_hits / max(gold_total, 1), 4)}


HELPFUL_FIRST = ("helpful", "truthful", "harmless")


def priority_study(world, tasks: list[Task], responses: list[list[str]], seed: int = 0,
                   guidelines: dict | None = None) -> dict:
    """How often labelers under each guideline prefer a response that states something false or
    helps with harm over one that is truthful and harmless (pairs with one of each)."""
    guidelines = guidelines or {"helpful first": HELPFUL_FIRST, "truthful and harmless first": DEFAULT_PRIORITY}
    gold = GoldJudge(world)
    out = {}
    for name, priority in guidelines.items():
        labelers = make_labelers(world, 5, priority, seed=seed)
        counts: dict = {}
        for row in label(tasks, responses, labelers, seed):
            task = Task.from_json(row["prompt"], row["task"])
            chosen, rejected = gold.score(task, row["chosen"]), gold.score(task, row["rejected"])
            ok = lambda v: v.truthful == 1 and v.harmless == 1
            if ok(chosen) == ok(rejected):
                continue
            for key in (task.family, "all"):
                c = counts.setdefault(key, [0, 0])
                c[0] += 1
                c[1] += not ok(chosen)
        out[name] = {f"{k}: false or harmful preferred": round(v[1] / v[0], 3) for k, v in sorted(counts.items())}
        out[name]["pairs"] = counts.get("all", [0])[0]
    return out


def group_by_prompt(rows) -> list[dict]:
    """Comparison rows (with ``prompt_id``) gathered per prompt: ``{"prompt", "responses"
    (distinct, in order of appearance), "pairs" [(chosen index, rejected index)]}``. The reward
    model and DPO train on these groups, every response of a prompt scored once."""
    groups: dict = {}
    for i, row in enumerate(rows):
        g = groups.setdefault(row["prompt_id"], {"prompt": row["prompt"], "responses": [], "pairs": []})
        if row["prompt"] != g["prompt"]:
            raise DataError(f"row {i}: prompt_id {row['prompt_id']!r} is shared by two different prompts "
                            f"({g['prompt'].strip()!r} and {row['prompt'].strip()!r}); give every prompt "
                            "its own prompt_id (when joining two labelled sets, offset the ids of one)")
        for key in ("chosen", "rejected"):
            if row[key] not in g["responses"]:
                g["responses"].append(row[key])
        g["pairs"].append((g["responses"].index(row["chosen"]), g["responses"].index(row["rejected"])))
    return list(groups.values())


def pair_indices(groups: list[dict]):
    """For a batch of :func:`group_by_prompt` groups whose responses are laid out one after the
    other: ``(chosen, rejected, weights)``, one entry per pair: the positions of its two responses
    and its weight ``1 / (number of prompts * the prompt's number of pairs)``, so that each
    prompt weighs the same in the loss (InstructGPT's fix for overfitting)."""
    chosen, rejected, weights, offset = [], [], [], 0
    for g in groups:
        for c, r in g["pairs"]:
            chosen.append(offset + c)
            rejected.append(offset + r)
            weights.append(1.0 / (len(groups) * len(g["pairs"])))
        offset += len(g["responses"])
    return torch.tensor(chosen), torch.tensor(rejected), torch.tensor(weights)


def prompt_batches(groups: list, prompts_per_batch: int, rng: random.Random):
    """One epoch over ``groups``: shuffled in place by ``rng``, then in batches of
    ``prompts_per_batch`` prompts (all the pairs of a prompt in the same batch)."""
    rng.shuffle(groups)
    for i in range(0, len(groups), prompts_per_batch):
        yield groups[i:i + prompts_per_batch]

"""Rankings, labelers, the ceiling, comparison data, and the reward model's loss and reading."""
import math
import random

import pytest
import torch

from rlhf_minimal.data import DataError
from rlhf_minimal.judge import GoldJudge
from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.preference import (agreement, comparisons_dataset, label,
                                     label_quality, labeling_seconds, make_labelers,
                                     ranking_to_pairs, validate_comparisons)
from rlhf_minimal.reward import (RewardConfig, last_token_index, pairwise_loss, score_sequences,
                                 train_reward_model)
from rlhf_minimal.world import IDK, ideal_response
from rlhf_minimal.world import _wrong_response


def _reference_loss(chosen, rejected, margin=0.0):
    """-log(sigmoid(x)) = log(1 + exp(-x)), written stably by hand."""
    out = []
    for c, r in zip(chosen.tolist(), rejected.tolist()):
        x = c - r - margin
        out.append(math.log1p(math.exp(-x)) if x > -30 else -x + math.log1p(math.exp(x)))
    return sum(out) / len(out)


def test_pairwise_loss_matches_formula_with_margin_and_large_gaps():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(50, generator=g) * 3, torch.randn(50, generator=g) * 3
    assert pairwise_loss(chosen, rejected).item() == pytest.approx(_reference_loss(chosen, rejected), rel=1e-5)
    assert pairwise_loss(chosen, rejected, 0.5).item() == pytest.approx(_reference_loss(chosen, rejected, 0.5), rel=1e-5)
    huge = pairwise_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    naive = -torch.log(torch.sigmoid(torch.tensor([-400.0])))
    assert torch.isinf(naive).all() and huge.item() == pytest.approx(400.0)
    assert pairwise_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))


def test_loss_depends_only_on_the_difference():
    c, r = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    assert pairwise_loss(c + 7, r + 7).item() == pytest.approx(pairwise_loss(c, r).item())


def test_ranking_to_pairs_counts_and_ties():
    strict = ranking_to_pairs([[2], [0], [3], [1]])
    assert len(strict) == 6 and strict[0] == (2, 0) and (3, 1) in strict
    for k in range(2, 10):
        assert len(ranking_to_pairs([[i] for i in range(k)])) == k * (k - 1) // 2
    tied = ranking_to_pairs([[0, 1], [2]])
    assert sorted(tied) == [(0, 2), (1, 2)]  # no pair inside the tie


def test_labelers_merge_duplicates_and_tie_equal_scores(ci_world):
    task = next(t for t in ci_world.splits["rm"] if t.family == "open_qa")
    right = ideal_response(ci_world, task)
    wrong = _wrong_response(ci_world, task, random.Random(0))
    labeler = make_labelers(ci_world, 1, temperature=0.01)[0]
    ranking = labeler.rank(task, [right, right, wrong, IDK])
    # the duplicate (index 1) is merged into response 0; with almost no noise the order is
    # right (score 1) > "i do not know" (0.3) > a wrong fact (0)
    assert ranking == [[0], [3], [2]]


def test_ceiling_on_a_hand_case(ci_world):
    """A labeler with zero noise agrees with its own utility on every pair: ceiling 1.
    A very noisy one is a coin flip on pairs: ceiling near 0.5."""
    tasks = [t for t in ci_world.splits["rm"] if t.family in ("open_qa", "classify", "closed_qa")][:40]
    rng = random.Random(0)
    responses = [[ideal_response(ci_world, t), _wrong_response(ci_world, t, rng), "hello !"] for t in tasks]
    gold = GoldJudge(ci_world)
    sharp = make_labelers(ci_world, 3, temperature=1e-4, bias_std=0.0)
    rows = label(tasks, responses, sharp)
    assert label_quality(rows, sharp, gold)["ceiling"] == 1.0
    assert agreement(tasks, responses, sharp, gold)["labeler_labeler"] == 1.0
    noisy = make_labelers(ci_world, 3, temperature=100.0, bias_std=0.0)
    rows = label(tasks, responses, noisy)
    assert 0.35 < label_quality(rows, noisy, gold)["ceiling"] < 0.65
    assert 0.35 < agreement(tasks, responses, noisy, gold)["labeler_labeler"] < 0.65


def test_bradley_terry_marginal(ci_world):
    """P(better over worse) = sigmoid(gap / T) for two responses with a known score gap."""
    task = next(t for t in ci_world.splits["rm"] if t.family == "open_qa")
    right, idk = ideal_response(ci_world, task), IDK  # scores 1.0 and 0.3
    labeler = make_labelers(ci_world, 1, temperature=0.5, bias_std=0.0)[0]
    wins = sum(labeler.rank(task, [right, idk])[0] == [0] for _ in range(4000)) / 4000
    assert wins == pytest.approx(1 / (1 + math.exp(-0.7 / 0.5)), abs=0.025)


def test_comparison_rows_are_validated():
    good = {"prompt": "p\n", "chosen": "a .", "rejected": "b ."}
    validate_comparisons([good])
    with pytest.raises(DataError, match="row 1: 'rejected' is empty"):
        validate_comparisons([good, {**good, "rejected": ""}])
    with pytest.raises(DataError, match="row 0: chosen and rejected are the same"):
        validate_comparisons([{**good, "rejected": "a ."}])
    with pytest.raises(DataError, match="no column 'chosen'"):
        comparisons_dataset([{"prompt": "p", "rejected": "b"}])


def test_labeling_cost_model():
    assert labeling_seconds(2) == pytest.approx(30 + 40 + 10)
    assert labeling_seconds(4) < labeling_seconds(9)


def test_reward_read_at_last_real_token_for_either_padding():
    torch.manual_seed(0)
    model = GPT(GPTConfig(30, 1, 2, 16, 16, head="scalar")).eval()
    seqs = [[3, 4, 5, 6], [7, 8]]
    right = score_sequences(model, seqs, 0, "cpu")
    for row, seq in enumerate(seqs):
        assert right[row].item() == pytest.approx(model(torch.tensor([seq]))[0, -1].item(), abs=1e-5)
    left_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token_index(left_mask).tolist() == [3, 3]
    assert last_token_index(torch.tensor([[1, 1, 0, 0]])).tolist() == [1]


def test_reward_training_is_reproducible_and_lowers_the_loss(ci_world, tokenizer):
    tasks = [t for t in ci_world.splits["rm"] if t.family in ("open_qa", "classify")][:24]
    rng = random.Random(0)
    responses = [[ideal_response(ci_world, t), _wrong_response(ci_world, t, rng), "hello !"] for t in tasks]
    rows = label(tasks, responses, make_labelers(ci_world, 2, temperature=0.05))
    torch.manual_seed(0)
    init = GPT(GPTConfig(tokenizer.vocab_size, 1, 2, 32, 96))
    cfg = RewardConfig(prompts_per_batch=4, epochs=4, lr=3e-3, warmup=2)
    _, log_a = train_reward_model(init, tokenizer, rows, cfg, seed=0, device="cpu")
    _, log_b = train_reward_model(init, tokenizer, rows, cfg, seed=0, device="cpu")
    assert log_a["loss"] == log_b["loss"]
    first, last = sum(log_a["loss"][:3]) / 3, sum(log_a["loss"][-3:]) / 3
    assert last < first - 0.1


def test_joined_comparison_sets_with_clashing_prompt_ids_are_refused():
    from rlhf_minimal.data import DataError
    from rlhf_minimal.preference import group_by_prompt

    a = {"prompt": "what does the bimo eat ?\n", "chosen": "fish .", "rejected": "roots .", "prompt_id": 0}
    b = {"prompt": "where does the bimo live ?\n", "chosen": "lake .", "rejected": "cave .", "prompt_id": 0}
    with pytest.raises(DataError, match="prompt_id 0 is shared by two different prompts"):
        group_by_prompt([a, b])
    assert len(group_by_prompt([a, {**b, "prompt_id": 1}])) == 2


def test_labelers_tastes_are_spread_evenly_and_change_only_their_own_cases(ci_world):
    """Each labeler's price of filler and value of declining come from an even spread over the
    range (so the team's average is its middle); a taste moves only the responses it is about."""
    team = make_labelers(ci_world, 5, temperature=0.3, filler_range=(0.2, 1.2), decline_range=(0.1, 0.5))
    assert sorted(round(l.filler_factor, 6) for l in team) == [0.3, 0.5, 0.7, 0.9, 1.1]
    assert sorted(round(l.decline_value, 6) for l in team) == [0.14, 0.22, 0.3, 0.38, 0.46]
    gold = GoldJudge(ci_world)
    task = next(t for t in ci_world.splits["rm"] if t.family == "open_qa")
    right = ideal_response(ci_world, task)
    padded = f"i hope this helps . {right}"
    for labeler in team:
        assert labeler.taste(task, right) == gold.score(task, right).score
        # helpful 1 is kept at the labeler's own factor instead of the judge's 0.6
        assert labeler.taste(task, padded) == pytest.approx(labeler.filler_factor)
        assert labeler.taste(task, IDK) == pytest.approx(labeler.decline_value)


def test_realistic_labelers_disagree_on_taste_not_on_false_facts(ci_world):
    """On right-against-wrong pairs every realistic labeler is nearly always right; on padded
    answers the team splits."""
    tasks = [t for t in ci_world.splits["rm"] if t.family in ("open_qa", "chat")][:40]
    rng = random.Random(0)
    gold = GoldJudge(ci_world)
    team = make_labelers(ci_world, 5, temperature=0.3, bias_std=0.0, filler_range=(0.2, 1.2))
    truth = [[ideal_response(ci_world, t), _wrong_response(ci_world, t, rng)] for t in tasks]
    assert label_quality(label(tasks, truth, team), team, gold)["labels_follow_gold"] > 0.93
    filler = [[ideal_response(ci_world, t), "i hope this helps . " + ideal_response(ci_world, t)] for t in tasks]
    assert agreement(tasks, filler, team, gold)["labeler_labeler"] < 0.8


def test_early_stopping_keeps_the_best_epoch(ci_world, tokenizer):
    """With a validation set, training stops ``patience`` epochs after the best validation loss
    and returns that epoch's weights: their validation loss is the smallest recorded."""
    from rlhf_minimal.preference import group_by_prompt
    from rlhf_minimal.reward import validation_loss

    tasks = [t for t in ci_world.splits["rm"] if t.family in ("open_qa", "classify")][:40]
    rng = random.Random(0)
    responses = [[ideal_response(ci_world, t), _wrong_response(ci_world, t, rng), "hello !"] for t in tasks]
    team = make_labelers(ci_world, 2, temperature=0.5)
    rows, val_rows = label(tasks[:30], responses[:30], team), label(tasks[30:], responses[30:], team)
    torch.manual_seed(0)
    init = GPT(GPTConfig(tokenizer.vocab_size, 1, 2, 32, 96))
    cfg = RewardConfig(prompts_per_batch=4, epochs=12, patience=2, lr=1e-2, warmup=2)
    model, log = train_reward_model(init, tokenizer, rows, cfg, seed=0, device="cpu", val_rows=val_rows)
    val = log["epoch_val_loss"]
    best = val.index(min(val))
    assert log["best_epoch"] == best + 1
    assert len(val) == 12 or len(val) == best + 1 + cfg.patience
    again = validation_loss(model, tokenizer, group_by_prompt(val_rows), None, "cpu")
    assert again == pytest.approx(min(val), abs=1e-4)


def test_gold_order_accuracy_counts_each_kind_of_difference(ci_world, tokenizer):
    """A reward model that is the gold judge itself orders every pair right; its reverse none."""
    from rlhf_minimal.reward import DIFFERENCE_KINDS, gold_order_accuracy

    gold = GoldJudge(ci_world)

    class Oracle:
        def __init__(self, sign):
            self.sign = sign

        def score(self, prompts, responses):
            return torch.tensor([self.sign * gold.score(p, r).score for p, r in zip(prompts, responses)])

    tasks = [t for t in ci_world.splits["rm"] if t.family in ("open_qa", "unanswerable", "refuse")][:30]
    rng = random.Random(0)
    responses = [[ideal_response(ci_world, t), _wrong_response(ci_world, t, rng),
                  "i hope this helps . " + ideal_response(ci_world, t), IDK] for t in tasks]
    right, wrong = (gold_order_accuracy(Oracle(s), tasks, responses, gold) for s in (1, -1))
    assert right["all"] == 1.0 and wrong["all"] == 0.0
    assert right["n_all"] == sum(right[f"n_{k}"] for k in DIFFERENCE_KINDS) > 0
    assert right["n_truth"] > 0 and right["n_unanswerable"] > 0 and right["n_filler"] > 0


def test_a_vote_labels_each_pair_by_the_majority_of_its_voters(ci_world):
    """Three voters per prompt: each row's label is what most of the voters who ordered the pair
    said (checked against each voter's own ranking); no labeler votes twice on a prompt."""
    tasks = [t for t in ci_world.splits["rm"] if t.family in ("open_qa", "chat")][:30]
    rng = random.Random(0)
    responses = [[ideal_response(ci_world, t), _wrong_response(ci_world, t, rng),
                  "i hope this helps . " + ideal_response(ci_world, t), IDK] for t in tasks]
    team = make_labelers(ci_world, 5, temperature=0.6, filler_range=(0.2, 1.2))
    rows = label(tasks, responses, team, seed=3, votes=3)
    replay = {lab.labeler_id: lab for lab in make_labelers(ci_world, 5, temperature=0.6, filler_range=(0.2, 1.2))}
    by_prompt = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    for i in sorted(by_prompt):
        voters = by_prompt[i][0]["voters"]
        assert len(set(voters)) == 3
    # replay the voters in the order label() called them and recount every pair's vote
    rng_order = random.Random("assign-3")
    order = list(range(len(tasks)))
    rng_order.shuffle(order)
    for slot, i in enumerate(order):
        voters = [replay[(slot * 3 + v) % 5] for v in range(3)]
        ranks = [lab.ranks(tasks[i], responses[i]) for lab in voters]
        for row in by_prompt.get(i, []):
            c, r = responses[i].index(row["chosen"]), responses[i].index(row["rejected"])
            for_c = sum(rk[c] < rk[r] for rk in ranks)
            ordered = sum(rk[c] != rk[r] for rk in ranks)
            assert row["vote"] == f"{for_c}/{ordered}" and 2 * for_c > ordered
    with pytest.raises(ValueError, match="votes must be between 1"):
        label(tasks, responses, team, votes=6)


class _FixedScores:
    """A stand-in reward: a fixed score per response text (only ``score`` and ``logit_scale``)."""

    def __init__(self, table, logit_scale=1.0):
        self.table, self.logit_scale = table, logit_scale

    def score(self, prompts, responses):
        return torch.tensor([self.table[r] for r in responses], dtype=torch.float64)


def test_fit_prior_weight_recovers_the_weights_that_made_the_labels():
    """Labels drawn from sigmoid(c (dh + alpha dp)) with c = 2, alpha = 0.7: the logistic fit of
    eq-reward-prior finds both, and the prior lowers the log-loss against the head alone."""
    from rlhf_minimal.reward import fit_prior_weight

    gen = torch.Generator().manual_seed(0)
    n = 6000
    h, p = torch.randn(2 * n, generator=gen), torch.randn(2 * n, generator=gen)
    names = [f"r{i}" for i in range(2 * n)]
    head = _FixedScores(dict(zip(names, h.tolist())), logit_scale=2.0)
    prior = _FixedScores(dict(zip(names, p.tolist())))
    rows = []
    for i in range(n):
        a, b = 2 * i, 2 * i + 1
        logit = 2.0 * ((h[a] - h[b]) + 0.7 * (p[a] - p[b]))
        first = torch.rand(1, generator=gen).item() < torch.sigmoid(logit).item()
        chosen, rejected = (a, b) if first else (b, a)
        rows.append({"prompt": "q", "chosen": names[chosen], "rejected": names[rejected]})
    fit = fit_prior_weight(head, prior, rows)
    assert fit["alpha"] == pytest.approx(0.7, abs=0.08)
    assert fit["c"] == pytest.approx(2.0, abs=0.15)
    assert fit["loss"] < fit["loss_head_only"] - 0.02
    flipped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    with pytest.raises(ValueError, match="worse than chance"):
        fit_prior_weight(head, prior, flipped)
    with pytest.raises(ValueError, match="validation split"):
        fit_prior_weight(head, prior, [])


def test_score_with_a_prior_is_the_normalised_head_plus_the_weighted_prior(digit_tokenizer):
    """eq-reward-prior: (raw - shift) / scale + alpha * prior score; without a prior, the head alone."""
    from rlhf_minimal.reward import RewardModel

    torch.manual_seed(0)
    head = GPT(GPTConfig(8, 1, 2, 16, 16, head="scalar")).eval()
    prompts, responses = ["2 3", "4", "5"], ["5 6", "7", "2 2 2"]
    rm = RewardModel(head, digit_tokenizer, shift=0.3, scale=2.0)
    raw = rm.raw(prompts, responses)
    assert rm.score(prompts, responses).tolist() == pytest.approx(((raw - 0.3) / 2.0).tolist())
    assert rm.logit_scale == 2.0
    prior = _FixedScores({"5 6": 1.0, "7": -2.0, "2 2 2": 0.5})
    with_prior = RewardModel(head, digit_tokenizer, 0.3, 2.0, prior=prior, prior_weight=0.4, logit_scale=3.0)
    expected = (raw - 0.3) / 2.0 + 0.4 * torch.tensor([1.0, -2.0, 0.5])
    assert with_prior.score(prompts, responses).tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert with_prior.logit_scale == 3.0

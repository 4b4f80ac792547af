"""The course's stages next to TRL's trainers (rlhf_minimal.interop): the same data, the same ids,
the same loss on one batch, and short runs of RewardTrainer, GRPOTrainer and DPOTrainer on tiny
models, offline."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is loaded from exported folders

import pytest
import torch

from rlhf_minimal import interop
from rlhf_minimal.data import DataError
from rlhf_minimal.judge import GoldJudge
from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.sampling import left_pad
from rlhf_minimal.reward import RewardModel
from rlhf_minimal.world import FILLERS, IDK, Task, ideal_response

# TRL asks the model about the deprecated name itself; nothing to act on here
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def _tiny(tokenizer, head="lm", seed=0, perturb=0.0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, d_model=32, max_len=96,
                          head=head))
    if perturb:
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    return model.eval()


def _easy_rows(world, tasks, rejected=IDK):
    """Ideal response against a decline (or another fixed response): an easy, consistent preference."""
    return [{"prompt": t.prompt, "chosen": ideal_response(world, t), "rejected": rejected,
             "prompt_id": i, "task": t.to_json()} for i, t in enumerate(tasks)]


@pytest.fixture(scope="module")
def answerable(ci_world):
    return [t for t in ci_world.splits["rm"] if t.family not in ("unanswerable", "refuse")]


@pytest.fixture(scope="module")
def sft(tokenizer):
    return _tiny(tokenizer, perturb=0.05)


# ----------------------------------------------------------------------------- data

def test_stage_datasets_have_trl_columns_and_round_trip(ci_world, answerable, tmp_path):
    rows = _easy_rows(ci_world, answerable[:10])
    held = _easy_rows(ci_world, answerable[10:14], rejected=FILLERS[0])
    dsets = interop.stage_datasets(ci_world, rows, held)
    assert set(dsets) == {"sft", "rl", "eval", "comparisons", "heldout_comparisons"}
    assert {"prompt", "completion"} <= set(dsets["sft"].column_names)
    for split in ("rl", "eval"):
        assert {"prompt", "task"} <= set(dsets[split].column_names)
        assert "completion" not in dsets[split].column_names
        assert len(dsets[split]) == len(ci_world.splits[split])
    for name in ("comparisons", "heldout_comparisons"):
        assert {"prompt", "chosen", "rejected"} <= set(dsets[name].column_names)
    assert len(dsets["comparisons"]) == 10 and len(dsets["heldout_comparisons"]) == 4
    assert "comparisons" not in interop.stage_datasets(ci_world)

    # the task JSON is enough for the gold judge
    judge = GoldJudge(ci_world)
    row = dsets["rl"][0]
    task = Task.from_json(row["prompt"], row["task"])
    assert judge.score(task, ideal_response(ci_world, task)).acceptable

    interop.save_stage_datasets(dsets, tmp_path / "stages")
    back = interop.load_stage_datasets(tmp_path / "stages")
    assert set(back) == set(dsets)
    for name in dsets:
        assert back[name].column_names == dsets[name].column_names
        assert back[name].to_list() == dsets[name].to_list()


def test_bad_data_is_refused_with_clear_errors(ci_world, answerable, tmp_path):
    rows = _easy_rows(ci_world, answerable[:3])
    with pytest.raises(DataError, match="'chosen'"):
        interop.stage_datasets(ci_world, [{k: v for k, v in r.items() if k != "chosen"} for r in rows])
    with pytest.raises(DataError, match=r"comparisons\[1\] has no 'rejected'"):
        interop.stage_datasets(ci_world, [rows[0], {"prompt": "x", "chosen": "y"}])
    with pytest.raises(DataError, match="same text"):
        interop.stage_datasets(ci_world, [{**rows[0], "rejected": rows[0]["chosen"]}])
    with pytest.raises(DataError, match="list of dicts"):
        interop.stage_datasets(ci_world, "not rows")
    with pytest.raises(FileNotFoundError, match="save_stage_datasets"):
        interop.load_stage_datasets(tmp_path / "nothing")
    with pytest.raises(TypeError, match="datasets.Dataset"):
        interop.save_stage_datasets({"sft": rows}, tmp_path / "bad")


# ----------------------------------------------------------------------------- reward model

def test_trl_reward_loss_equals_our_pairwise_loss_on_one_batch(ci_world, tokenizer, answerable, tmp_path):
    model = _tiny(tokenizer, head="scalar", seed=1, perturb=0.1)
    with torch.no_grad():
        model.head.bias.fill_(0.7)  # GPT-2's score layer has no bias: the difference must cancel it
    rm = RewardModel(model, tokenizer, shift=0.3, scale=1.7)
    # several pairs per prompt, responses of different lengths (padding inside the batch)
    rows = (_easy_rows(ci_world, answerable[:6]) + _easy_rows(ci_world, answerable[:6], FILLERS[1])
            + _easy_rows(ci_world, answerable[6:10], f"{FILLERS[2]} {IDK}"))
    result = interop.trl_reward_loss_on_batch(rm, rows, tmp_path)
    assert result["n_pairs"] == len(rows) == 16
    assert math.isfinite(result["trl_loss"]) and result["trl_loss"] > 0
    assert result["abs_diff"] < 1e-6, result
    assert result["max_reward_diff"] < 1e-5  # TRL's reward + b is our raw reward, pair by pair
    assert result["head_bias"] == pytest.approx(0.7)
    # our training loss weighs prompts equally: a different number on the same pairs
    assert math.isfinite(result["our_prompt_weighted_loss"])

    small = interop.trl_reward_loss_on_batch(rm, rows, tmp_path / "small", batch_size=3)
    assert small["n_pairs"] == 3 and small["abs_diff"] < 1e-6

    with pytest.raises(DataError, match="'chosen'"):
        interop.trl_reward_loss_on_batch(rm, [{"prompt": r["prompt"], "rejected": r["rejected"]} for r in rows],
                                         tmp_path / "bad")
    long_row = {"prompt": answerable[0].prompt, "chosen": " ".join([IDK] * 30), "rejected": IDK}
    with pytest.raises(ValueError, match="longer than the model's context"):
        interop.trl_reward_loss_on_batch(rm, [long_row], tmp_path / "long")
    with pytest.raises(TypeError, match="RewardModel"):
        interop.trl_reward_loss_on_batch(model, rows, tmp_path / "bad2")


def test_trl_reward_trainer_learns_an_easy_preference(ci_world, tokenizer, answerable, sft, tmp_path):
    rows = _easy_rows(ci_world, answerable[:48]) + _easy_rows(ci_world, answerable[:16], FILLERS[0])
    held = _easy_rows(ci_world, answerable[48:72])
    hf_model, info = interop.train_trl_reward_model(sft, tokenizer, rows, held, epochs=2, lr=1e-3, batch_size=8,
                                                    seed=0, output_dir=tmp_path / "rm", logging_steps=2)
    assert info["steps"] == 16 and info["n_pairs"] == 64
    assert all(math.isfinite(x) for x in info["loss"]) and info["loss"][-1] < info["loss"][0]
    assert info["train_accuracy"] > 0.5
    assert info["heldout_accuracy"] > 0.5
    assert info["seconds"] > 0
    assert hf_model.config.num_labels == 1
    # the accuracy helper reads prompt + response + EOS, as ours does
    assert interop.hf_pairwise_accuracy(hf_model, _tokenizer_of(tmp_path / "rm" / "sft"), held) == \
        info["heldout_accuracy"]

    with pytest.raises(ValueError, match="vocabulary"):
        interop.train_trl_reward_model(_wrong_vocab(tokenizer), tokenizer, rows, held, output_dir=tmp_path / "x")
    with pytest.raises(DataError, match="heldout_rows"):
        interop.train_trl_reward_model(sft, tokenizer, rows, [], output_dir=tmp_path / "y")


def _tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _causal_lm(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path))


def _wrong_vocab(tokenizer):
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size + 3, n_layer=1, n_head=2, d_model=16, max_len=96))


# ----------------------------------------------------------------------------- positions

def test_course_positions_make_trls_log_probs_ours_on_left_padding(ci_world, tokenizer, tmp_path):
    """GRPOTrainer scores left-padded prompt + completion rows through a fused LM head without
    position ids; with use_course_positions its log-probabilities are our model's."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from rlhf_minimal.export import export_causal_lm
    from rlhf_minimal.ppo import token_logprobs

    ours = _tiny(tokenizer, seed=2, perturb=0.1)
    export_causal_lm(ours, tokenizer, tmp_path / "lm")
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "lm")).eval()
    add_fused_lm_head(hf)
    tasks = list(ci_world.splits["rl"])[:6]
    seqs = [tokenizer.encode(t.prompt) + tokenizer.encode(ideal_response(ci_world, t)) + [tokenizer.eos_id]
            for t in tasks]
    assert len({len(s) for s in seqs}) > 1  # the batch really is left-padded
    ids, mask = left_pad(seqs, tokenizer.pad_id)
    labels = ids.masked_fill(mask == 0, -100)
    real = (mask[:, 1:] & mask[:, :-1]).bool()  # predictions from a real token of a real token
    with torch.no_grad():
        expected = token_logprobs(ours(ids, mask)[:, :-1], ids[:, 1:])
        plain = hf(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
        handle = interop.use_course_positions(hf)
        fixed = hf(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
        handle.remove()
    assert (plain - expected)[real].abs().max() > 1e-2  # GPT-2's own positions: another model
    assert (fixed - expected)[real].abs().max() < 1e-5


# ----------------------------------------------------------------------------- GRPO

def test_grpo_two_steps_gives_a_policy_the_evaluation_can_score(ci_world, tokenizer, sft, tmp_path):
    rm = RewardModel(_tiny(tokenizer, head="scalar", seed=3, perturb=0.1), tokenizer)
    judge = GoldJudge(ci_world)
    tasks = list(ci_world.splits["rl"])[:8]
    # no EOS penalty: a random policy rarely ends, and equal rewards would give zero advantages
    policy, info = interop.train_trl_grpo(sft, tokenizer, rm, tasks, judge, steps=2, seed=0, prompts_per_step=2,
                                          num_generations=2, minibatch_size=4, max_new_tokens=10, beta=0.1,
                                          lr=1e-3, no_eos_penalty=None, output_dir=tmp_path / "grpo")
    assert info["steps"] == 2 and info["optimizer_steps"] == 2
    for key in ("reward", "rm_score", "gold_score", "no_eos", "kl"):
        assert len(info[key]) == 2 and all(math.isfinite(x) for x in info[key]), (key, info[key])
    assert all(math.isfinite(e["loss"]) for e in info["log"] if "loss" in e)
    assert info["config"]["max_completion_length"] == 10 and info["seconds"] > 0
    start = _causal_lm(tmp_path / "grpo" / "sft_policy").state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in policy.state_dict().items())  # it trained

    eval_tasks = list(ci_world.splits["eval"])[:6]
    result = interop.evaluate_policy_text({"sft": sft, "grpo": policy}, sft, tokenizer, judge, eval_tasks,
                                          max_new_tokens=10)
    assert set(result) == {"sampled", "greedy"}
    assert result["sampled"]["sft"]["kl"] == 0.0
    assert math.isfinite(result["sampled"]["grpo"]["kl"])
    assert len(result["greedy"]["grpo"]["responses"]) == 6
    table = interop.comparison_table(result, {"grpo": info["seconds"]})
    assert [r["policy"] for r in table] == ["sft", "grpo"] and table[1]["train_seconds"] == info["seconds"]
    assert table[0]["win_vs_sft_sampled"] == table[0]["win_vs_sft_greedy"] == 0.5  # SFT against itself
    assert 0 <= table[1]["win_vs_sft_sampled"] <= 1

    with pytest.raises(ValueError, match="beta"):
        interop.train_trl_grpo(sft, tokenizer, rm, tasks, beta=0.0, output_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="num_generations"):
        interop.train_trl_grpo(sft, tokenizer, rm, tasks, num_generations=1, output_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="multiple of minibatch_size"):
        interop.train_trl_grpo(sft, tokenizer, rm, tasks, prompts_per_step=3, num_generations=2, minibatch_size=4,
                               output_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="non-empty list of world Tasks"):
        interop.train_trl_grpo(sft, tokenizer, rm, [], output_dir=tmp_path / "x")


# ----------------------------------------------------------------------------- DPO

def test_dpo_two_steps_starts_at_log_2_and_gives_a_scorable_policy(ci_world, tokenizer, sft, answerable, tmp_path):
    rows = _easy_rows(ci_world, answerable[:16])
    held = _easy_rows(ci_world, answerable[16:24])
    policy, info = interop.train_trl_dpo(sft, tokenizer, rows, beta=0.1, lr=1e-3, batch_size=8, max_steps=2,
                                         heldout_rows=held, output_dir=tmp_path / "dpo")
    assert info["steps"] == 2 and len(info["loss"]) == 2  # logged every step by default, short runs too
    assert all(math.isfinite(x) for x in info["loss"])
    assert info["loss"][0] == pytest.approx(math.log(2), abs=1e-4)  # the policy starts as the reference
    assert 0.0 <= info["heldout_implicit_accuracy"] <= 1.0

    judge = GoldJudge(ci_world)
    result = interop.evaluate_policy_text({"dpo": policy}, sft, tokenizer, judge,
                                          list(ci_world.splits["eval"])[:6], max_new_tokens=10)
    assert math.isfinite(result["sampled"]["dpo"]["kl"])
    assert math.isfinite(result["greedy"]["dpo"]["gold_score"])

    with pytest.raises(ValueError, match="beta"):
        interop.train_trl_dpo(sft, tokenizer, rows, beta=0.0, output_dir=tmp_path / "x")
    with pytest.raises(DataError, match="'rejected'"):
        interop.train_trl_dpo(sft, tokenizer, [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in rows],
                              output_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="has no field 'no_such_field'"):
        interop.train_trl_dpo(sft, tokenizer, rows, config_overrides={"no_such_field": 1}, output_dir=tmp_path / "z")
    with pytest.raises(TypeError, match="cannot evaluate"):
        interop.evaluate_policy_text({"x": object()}, sft, tokenizer, judge, list(ci_world.splits["eval"])[:2])

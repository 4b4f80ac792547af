"""The same SFT, reward and PPO code on a transformers model (rlhf_minimal.hf), offline: tiny models
built from a configuration, with the world's tokenizer exported to transformers."""
from dataclasses import replace

import pytest
import torch

from rlhf_minimal.export import export_causal_lm, export_tokenizer
from rlhf_minimal.hf import HFCausalLM, HFTokenizer, tiny_causal_lm
from rlhf_minimal.model import GPT, GPTConfig, KVCache
from rlhf_minimal.sampling import generate, left_pad


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer):
    hf = export_tokenizer(tokenizer)
    hf.pad_token = None  # as GPT-2 and Llama tokenizers come: no pad token
    return HFTokenizer(hf)


def test_tokenizer_gets_eos_as_pad_and_encodes_like_ours(hf_tokenizer, tokenizer, ci_world):
    assert hf_tokenizer.pad_from_eos and hf_tokenizer.pad_id == hf_tokenizer.eos_id == tokenizer.eos_id
    for task in list(ci_world.splits["rl"])[:30]:
        assert hf_tokenizer.encode(task.prompt) == tokenizer.encode(task.prompt)
        assert hf_tokenizer.encode(task.prompt, add_eos=True)[-1] == tokenizer.eos_id
        ids = tokenizer.encode(task.prompt)
        assert hf_tokenizer.decode(ids + [tokenizer.eos_id, tokenizer.pad_id]) == tokenizer.decode(ids)


def test_a_tokenizer_without_eos_is_refused(hf_tokenizer):
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer.hf.backend_tokenizer)
    with pytest.raises(ValueError, match="no EOS token"):
        HFTokenizer(bare)


def test_wrapped_export_gives_our_logits_and_generations(tmp_path, tokenizer, hf_tokenizer, ci_world):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ours = GPT(GPTConfig(tokenizer.vocab_size, n_layer=2, n_head=2, d_model=32, max_len=64)).eval()
    export_causal_lm(ours, tokenizer, tmp_path / "lm")
    wrapped = HFCausalLM(AutoModelForCausalLM.from_pretrained(tmp_path / "lm")).eval()
    assert wrapped.config.max_len == 64 and wrapped.config.n_layer == 2
    prompts = [tokenizer.encode(t.prompt) for t in list(ci_world.splits["rl"])[:8]]
    ids, mask = left_pad(prompts, tokenizer.pad_id)
    with torch.no_grad():
        assert torch.allclose(wrapped(ids, mask)[mask.bool()], ours(ids, mask)[mask.bool()], atol=1e-5)
    for use_cache in (True, False):
        gen = torch.Generator().manual_seed(3)
        _, _, a = generate(wrapped, prompts, 10, tokenizer.eos_id, tokenizer.pad_id, temperature=1.0,
                           generator=gen, use_cache=use_cache)
        gen = torch.Generator().manual_seed(3)
        _, _, b = generate(ours, prompts, 10, tokenizer.eos_id, tokenizer.pad_id, temperature=1.0,
                           generator=gen)
        assert torch.equal(a, b)


def test_context_overflow_is_refused(hf_tokenizer):
    model = HFCausalLM(tiny_causal_lm(hf_tokenizer.vocab_size, max_len=16))
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(torch.ones(1, 17, dtype=torch.long))
    cache = KVCache(model.config.n_layer)
    model(torch.ones(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(torch.ones(1, 7, dtype=torch.long), torch.ones(1, 17, dtype=torch.long), cache)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_sft_reward_and_ppo_run_unchanged_on_a_transformers_model(kind, hf_tokenizer, ci_world):
    from rlhf_minimal.judge import GoldJudge
    from rlhf_minimal.ppo import PPOConfig, train_ppo
    from rlhf_minimal.preference import label, make_labelers, sample_k
    from rlhf_minimal.reward import RewardConfig, RewardModel, pairwise_accuracy, train_reward_model
    from rlhf_minimal.sft import SFTConfig, train_sft
    from rlhf_minimal.world import demonstrations

    lm = HFCausalLM(tiny_causal_lm(hf_tokenizer.vocab_size, kind=kind, d_model=48, max_len=96,
                                   eos_id=hf_tokenizer.eos_id))
    rows = demonstrations(ci_world, "sft")
    cfg = replace(SFTConfig.preset("ci"), epochs=3, lr=3e-3)
    sft, log = train_sft(lm, hf_tokenizer, ci_world, rows, cfg, seed=0, device="cpu")
    assert log["val_loss"][-1] < 0.7 * log["val_loss"][0]
    assert isinstance(sft, HFCausalLM)

    tasks = list(ci_world.splits["rm"])[:30]
    labelers = make_labelers(ci_world, 3, seed=0)
    comparisons = label(tasks, sample_k(sft, hf_tokenizer, tasks, 3, seed=0), labelers, seed=0)
    rm_net, rm_log = train_reward_model(sft, hf_tokenizer, comparisons, RewardConfig(epochs=2), seed=0,
                                        device="cpu")
    rm = RewardModel(rm_net, hf_tokenizer)
    assert all(torch.isfinite(torch.tensor(rm_log["loss"])))
    assert pairwise_accuracy(rm, comparisons) > 0.6  # it fits its training comparisons

    ppo_cfg = replace(PPOConfig.preset("ci"), steps=2, prompts_per_step=8, minibatch_size=4, max_new_tokens=12)
    policy, ppo_log = train_ppo(sft, rm, hf_tokenizer, list(ci_world.splits["rl"])[:16], ppo_cfg, seed=0,
                                device="cpu", judge=GoldJudge(ci_world))
    assert len(ppo_log["kl"]) == 2 and all(torch.isfinite(torch.tensor(ppo_log["rm_score"])))
    assert isinstance(policy.lm, HFCausalLM)

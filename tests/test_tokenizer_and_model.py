"""Tokenizer round trip and errors; the GPT's KV cache, padding and sampling."""
import pytest
import torch
import torch.nn.functional as F

from rlhf_minimal.model import GPT, GPTConfig, KVCache, lm_loss
from rlhf_minimal.sampling import filter_logits, generate, left_pad
from rlhf_minimal.tokenizer import Tokenizer, UnknownWordError
from rlhf_minimal.world import demonstrations


def test_round_trip_on_all_world_text(ci_world, tokenizer):
    texts = ci_world.corpus + [t.prompt for ts in ci_world.splits.values() for t in ts]
    texts += [r["completion"] for r in demonstrations(ci_world)]
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_tokens(tokenizer):
    assert tokenizer.pad_id != tokenizer.eos_id
    ids = tokenizer.encode("the", add_eos=True)
    assert ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(ids) == "the"


def test_unknown_word_is_named(tokenizer):
    with pytest.raises(UnknownWordError, match="'zebra'"):
        tokenizer.encode("the zebra eats fish .")
    with pytest.raises(UnknownWordError, match="<eos>"):
        tokenizer.encode("the <eos>")


def test_save_and_load(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok.json")
    again = Tokenizer.load(tmp_path / "tok.json")
    assert again.itos == tokenizer.itos


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return GPT(GPTConfig(tokenizer.vocab_size, n_layer=2, n_head=2, d_model=32, max_len=64)).eval()


def test_greedy_with_cache_equals_without(ci_world, tokenizer, tiny_model):
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:6]]
    _, _, cached = generate(tiny_model, prompts, 12, tokenizer.eos_id, tokenizer.pad_id, temperature=0)
    _, _, plain = generate(tiny_model, prompts, 12, tokenizer.eos_id, tokenizer.pad_id, temperature=0,
                           use_cache=False)
    assert torch.equal(cached, plain)


def test_preallocated_cache_gives_the_same_logits_as_a_growing_one(ci_world, tokenizer, tiny_model):
    """A prompt, then three single tokens: buffers written in place and tensors grown by
    concatenation hand attention the same keys and values, so the logits are equal exactly; and
    both equal the logits of the whole sequence computed at once."""
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:3]]
    ids, mask = left_pad(prompts, tokenizer.pad_id)
    extra = torch.randint(5, tokenizer.vocab_size, (ids.size(0), 3), generator=torch.Generator().manual_seed(0))
    growing, buffers = KVCache(tiny_model.config.n_layer), KVCache(tiny_model.config.n_layer, capacity=ids.size(1) + 3)
    full = torch.cat([mask, torch.ones_like(extra)], 1)
    with torch.no_grad():
        steps = [(ids, mask)] + [(extra[:, i:i + 1], full[:, :ids.size(1) + i + 1]) for i in range(3)]
        for step_ids, step_mask in steps:
            a, b = tiny_model(step_ids, step_mask, growing), tiny_model(step_ids, step_mask, buffers)
            assert torch.equal(a, b)
        whole = tiny_model(torch.cat([ids, extra], 1), full)
    assert torch.allclose(whole[:, -1], b[:, -1], atol=1e-5)
    assert buffers.length == growing.length == ids.size(1) + 3
    with pytest.raises(ValueError, match="the cache holds"):
        tiny_model(extra[:, :1], torch.cat([full, torch.ones_like(extra[:, :1])], 1), buffers)


def test_left_padding_does_not_change_logits(ci_world, tokenizer, tiny_model):
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:5]]
    ids, mask = left_pad(prompts, tokenizer.pad_id)
    batched = tiny_model(ids, mask)
    for row, prompt in enumerate(prompts):
        alone = tiny_model(torch.tensor([prompt]))
        assert torch.allclose(alone[0, -1], batched[row, -1], atol=1e-5)


def test_batched_sampling_matches_one_at_a_time(ci_world, tokenizer, tiny_model):
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:4]]
    _, _, batched = generate(tiny_model, prompts, 10, tokenizer.eos_id, tokenizer.pad_id, temperature=0)
    for row, prompt in enumerate(prompts):
        _, _, alone = generate(tiny_model, [prompt], 10, tokenizer.eos_id, tokenizer.pad_id, temperature=0)
        n = alone.size(1)
        assert torch.equal(batched[row, :n], alone[0])


def test_generation_stops_at_eos_and_pads_after(tokenizer, tiny_model):
    with torch.no_grad():  # make EOS the only likely token after the first step
        model = GPT(tiny_model.config)
        model.load_state_dict(tiny_model.state_dict())
        model.head.weight[tokenizer.eos_id] += 5.0 * model.ln_f.weight.sign()
    _, _, out = generate(model, [[5, 6], [7]], 8, tokenizer.eos_id, tokenizer.pad_id, temperature=0)
    for row in out.tolist():
        if tokenizer.eos_id in row:
            after = row[row.index(tokenizer.eos_id) + 1:]
            assert all(t == tokenizer.pad_id for t in after)


def test_sampling_is_seeded(ci_world, tokenizer, tiny_model):
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:4]]
    runs = [generate(tiny_model, prompts, 10, tokenizer.eos_id, tokenizer.pad_id, temperature=1.0,
                     generator=torch.Generator().manual_seed(3))[2] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_prompt_longer_than_context_is_refused(tokenizer, tiny_model):
    with pytest.raises(ValueError, match="exceeds the model's context"):
        generate(tiny_model, [[5] * 60], 10, tokenizer.eos_id, tokenizer.pad_id)
    with pytest.raises(ValueError, match="longer than the model's context"):
        tiny_model(torch.zeros(1, 65, dtype=torch.long))


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    assert not torch.isinf(filter_logits(logits, top_k=2)[0, :2]).any()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, 0.5 + 0.3 crosses it
    kept = ~torch.isinf(filter_logits(logits, top_p=0.5))
    assert kept.tolist() == [[True, False, False, False]]


def test_lm_loss_matches_hand_computation():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, -100, 4], [0, 2, -100]])
    by_hand = []
    for b in range(2):
        for t in range(3):
            if targets[b, t] != -100:
                by_hand.append(-F.log_softmax(logits[b, t], -1)[targets[b, t]])
    assert torch.allclose(lm_loss(logits, targets), torch.stack(by_hand).mean())


def test_scalar_head_keeps_the_body(tiny_model):
    scalar = tiny_model.with_scalar_head()
    ids = torch.tensor([[3, 4, 5]])
    assert scalar(ids).shape == (1, 3)
    _, hidden = tiny_model(ids, return_hidden=True)
    _, hidden2 = scalar(ids, return_hidden=True)
    assert torch.allclose(hidden, hidden2)
    std = scalar.head.weight.std().item()
    assert 0.5 / (33 ** 0.5) < std < 1.5 / (33 ** 0.5)

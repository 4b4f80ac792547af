"""Export to the Hugging Face format: same ids, same logits, same rewards, clear errors."""
import random
from types import SimpleNamespace

import pytest
import torch

from rlhf_minimal.export import (export_causal_lm, export_reward_model, export_tokenizer,
                                 gpt2_state_dict, load_exported, normalised_reward, position_ids,
                                 reward_inputs)
from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.sampling import generate, left_pad
from rlhf_minimal.reward import RewardModel
from rlhf_minimal.world import ideal_response

TOL = 1e-5


def _perturb(model: GPT, seed: int) -> GPT:
    """Move every parameter (LayerNorm gains and biases, the zero-initialised biases) away from
    its initial value, so that a parameter mapped to the wrong place shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if ("ln" in name or name.endswith("bias")) else 0.1
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def _tiny(tokenizer, head="lm", seed=0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, d_model=32, max_len=64,
                    head=head)
    return _perturb(GPT(cfg), seed + 100)


def _world_texts(world, n_prompts=40):
    texts = list(world.corpus[:200])
    for split in ("sft", "rm", "rl", "eval"):
        texts += [t.prompt for t in world.splits[split][:n_prompts]]
    return texts


@pytest.fixture(scope="module")
def exported_lm(tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = _tiny(tokenizer)
    path = tmp_path_factory.mktemp("lm")
    export_causal_lm(model, tokenizer, path)
    return (model, AutoModelForCausalLM.from_pretrained(str(path)).eval(),
            AutoTokenizer.from_pretrained(str(path)), path)


@pytest.fixture(scope="module")
def exported_rm(tokenizer, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    model = _tiny(tokenizer, head="scalar", seed=1)
    with torch.no_grad():
        model.head.bias.fill_(0.7)  # GPT-2's score layer has no bias: make ours matter
    rm = RewardModel(model, tokenizer, shift=0.3, scale=1.7)
    path = tmp_path_factory.mktemp("rm")
    export_reward_model(rm, path)
    return rm, AutoModelForSequenceClassification.from_pretrained(str(path)).eval(), path


# ----------------------------------------------------------------------------- tokenizer

def test_tokenizer_ids_and_text_round_trip(ci_world, tokenizer, exported_lm):
    hf_tok = exported_lm[2]
    assert hf_tok.pad_token_id == tokenizer.pad_id == 0
    assert hf_tok.eos_token_id == tokenizer.eos_id == 1
    assert len(hf_tok) == tokenizer.vocab_size
    assert hf_tok.padding_side == "right"
    assert hf_tok.convert_ids_to_tokens(list(range(tokenizer.vocab_size))) == tokenizer.itos
    texts = _world_texts(ci_world)
    assert any("\n" in t for t in texts)
    for text in texts:
        ids = tokenizer.encode(text)
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == ids, text
        assert hf_tok.decode(ids) == tokenizer.decode(ids) == text
        framed = ids + [tokenizer.eos_id, tokenizer.pad_id]
        assert hf_tok.decode(framed, skip_special_tokens=True) == tokenizer.decode(framed)
    # a prompt followed by its response, as the policy writes it
    task = ci_world.splits["rl"][0]
    ids = tokenizer.encode(task.prompt) + tokenizer.encode(ideal_response(ci_world, task))
    assert hf_tok.decode(ids) == tokenizer.decode(ids)


def test_tokenizer_padding_side_and_unknown_words(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    export_tokenizer(tokenizer, tmp_path / "tok", padding_side="left")
    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert hf_tok.padding_side == "left"
    batch = hf_tok(["the cave .", "the"], padding=True, add_special_tokens=False)
    assert batch["input_ids"][1][:2] == [tokenizer.pad_id] * 2
    assert batch["attention_mask"][1] == [0, 0, 1]
    with pytest.raises(Exception):  # no unknown-word token: nothing is silently replaced
        hf_tok("the qqqzzz", add_special_tokens=False)
    with pytest.raises(ValueError, match="padding_side"):
        export_tokenizer(tokenizer, padding_side="middle")


# ----------------------------------------------------------------------------- causal LM

def test_weight_mapping_transposes_linear_layers(tokenizer):
    model = _tiny(tokenizer)
    state = gpt2_state_dict(model)
    assert torch.equal(state["transformer.h.0.attn.c_attn.weight"], model.blocks[0].attn.qkv.weight.t())
    assert torch.equal(state["transformer.h.1.mlp.c_fc.weight"], model.blocks[1].mlp[0].weight.t())
    assert torch.equal(state["lm_head.weight"], model.head.weight)
    assert len(state) == len(model.state_dict())


def test_causal_lm_logits_match_without_padding(ci_world, tokenizer, exported_lm):
    ours, hf, _, _ = exported_lm
    worst = 0.0
    with torch.no_grad():
        for text in ci_world.corpus[:5]:
            ids = torch.tensor([tokenizer.encode(text)[:64]])
            worst = max(worst, (hf(input_ids=ids).logits - ours(ids)).abs().max().item())
        # right padding: the default positions are ours, compare the real positions
        seqs = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:6]]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
        mask = (torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
        diff = (hf(input_ids=ids, attention_mask=mask).logits - ours(ids, mask)).abs().amax(-1)
        worst = max(worst, diff[mask.bool()].max().item())
    assert worst < TOL


def test_causal_lm_logits_match_left_padded(ci_world, tokenizer, exported_lm):
    ours, hf, _, _ = exported_lm
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["rl"][:8]]
    assert len({len(p) for p in prompts}) > 1
    ids, mask = left_pad(prompts, tokenizer.pad_id)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
        diff = (theirs - ours(ids, mask)).abs().amax(-1)
        # and each row equals the unpadded prompt on its own
        alone = ours(torch.tensor([prompts[0]]))[0]
    assert diff[mask.bool()].max().item() < TOL
    assert (theirs[0][mask[0].bool()] - alone).abs().max().item() < TOL


def test_greedy_generation_matches(ci_world, tokenizer, exported_lm):
    ours, hf, _, _ = exported_lm
    prompts = [tokenizer.encode(t.prompt) for t in ci_world.splits["eval"][:4]]
    ids, mask, response = generate(ours, prompts, 6, tokenizer.eos_id, tokenizer.pad_id,
                                   temperature=0)
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                          eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    assert out[:, ids.size(1):].tolist() == response.tolist()


def test_lm_folder_is_safetensors_and_loads(exported_lm):
    from transformers import GPT2LMHeadModel

    path = exported_lm[3]
    names = {p.name for p in path.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for n in names)
    model, tok = load_exported(path)
    assert isinstance(model, GPT2LMHeadModel) and tok.eos_token_id == 1
    assert model.config.tie_word_embeddings is False
    assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)


# ----------------------------------------------------------------------------- reward model

def _reward_batch(world, tokenizer):
    rng = random.Random(0)
    tasks = world.splits["rm"][:7]
    prompts = [t.prompt for t in tasks]
    responses = [ideal_response(world, t, rng) for t in tasks]
    # one text that fills the context exactly: no EOS is appended
    room = 64 - len(tokenizer.encode(prompts[0]))
    prompts.append(prompts[0])
    responses.append(" ".join(["the"] * room))
    return prompts, responses


@pytest.mark.parametrize("side", ["right", "left"])
def test_reward_model_normalised_rewards_match(ci_world, tokenizer, exported_rm, side):
    from transformers import AutoTokenizer

    rm, hf, path = exported_rm
    prompts, responses = _reward_batch(ci_world, tokenizer)
    hf_tok = AutoTokenizer.from_pretrained(str(path))
    ids, mask = reward_inputs(hf_tok, prompts, responses, padding_side=side)
    assert (ids[:, -1 if side == "left" else 0] != tokenizer.pad_id).all()
    assert (mask == 0).any()  # the batch is padded
    theirs = normalised_reward(hf, ids, mask)
    expected = rm.score(prompts, responses)
    assert (theirs - expected).abs().max().item() < TOL
    # the raw HF score is ours minus the head's bias, recorded in the configuration
    norm = hf.config.rlhf_minimal
    assert norm["head_bias"] == pytest.approx(0.7, abs=1e-6)
    assert norm["shift"] == pytest.approx(rm.shift - norm["head_bias"])
    assert norm["scale"] == pytest.approx(rm.scale)


def test_reward_model_loads_with_its_tokenizer(exported_rm):
    from transformers import GPT2ForSequenceClassification

    _, _, path = exported_rm
    model, tok = load_exported(path)
    assert isinstance(model, GPT2ForSequenceClassification)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id == 0
    assert (path / "model.safetensors").exists()


# ----------------------------------------------------------------------------- errors

def test_export_errors(tokenizer, tmp_path):
    lm, scalar = _tiny(tokenizer), _tiny(tokenizer, head="scalar")
    with pytest.raises(ValueError, match="export_reward_model"):
        export_causal_lm(scalar, tokenizer, tmp_path / "a")
    with pytest.raises(ValueError, match="export_causal_lm"):
        export_reward_model(RewardModel(lm, tokenizer), tmp_path / "b")
    wrong = GPT(GPTConfig(vocab_size=tokenizer.vocab_size + 3, n_layer=1, n_head=2, d_model=16,
                          max_len=32))
    with pytest.raises(ValueError, match="vocabulary of .* tokenizer has"):
        export_causal_lm(wrong, tokenizer, tmp_path / "c")
    with pytest.raises(ValueError, match="vocabulary"):
        export_reward_model(RewardModel(wrong.with_scalar_head(), tokenizer), tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")  # refused before writing anything
    with pytest.raises(ValueError, match="export_reward_model"):
        normalised_reward(SimpleNamespace(config=SimpleNamespace(pad_token_id=0)),
                          torch.ones(1, 2, dtype=torch.long))

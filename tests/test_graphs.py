"""GraphedStep: a training step written in the open, replayed per input shape, trains exactly
like the same step run eagerly; the graph bookkeeping (static buffers, copies of outputs, one
graph per shape, eviction) is checked on the CPU with a stand-in recorder that re-runs the step
where CUDA would replay its kernels; the fixed-shape padding of PPO rollouts does not change the
loss."""
import copy
from types import SimpleNamespace

import pytest
import torch

from rlhf_minimal import graphs, ppo
from rlhf_minimal.device import RunSettings, run_settings
from rlhf_minimal.graphs import GraphedStep, RerunRecorder, decode_step, graphed_decoder, make_graph_optimizer
from rlhf_minimal.model import GPT, GPTConfig, KVCache, lm_loss
from rlhf_minimal.ppo import PolicyWithValue, PPOConfig, pad_rollout, ppo_update, rollout
from rlhf_minimal.pretrain import lm_training_step
from rlhf_minimal.sampling import generate, left_pad
from rlhf_minimal.sft import _batches, sft_loss
from rlhf_minimal.tokenizer import Tokenizer
from rlhf_minimal.train import Precision, make_optimizer, set_lr
from rlhf_minimal.world import Task


class ReplayByRerunning(RerunRecorder):
    """The package's CPU stand-in for CUDA graphs, counting its recordings."""

    def __init__(self):
        self.records = 0

    def record(self, fn):
        self.records += 1
        return super().record(fn)


def _tiny_lm(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, n_layer=1, n_head=2, d_model=16, max_len=16))


def _lm_step(model, optimizer, graphed=False, recorder=None, max_graphs=8):
    step, _ = lm_training_step(model, optimizer, Precision("cpu"))
    return GraphedStep(step, "cpu", max_graphs, recorder) if graphed else step


def _batches_of_two_shapes(n=9):
    g = torch.Generator().manual_seed(1)
    widths = [6, 6, 9, 6, 9, 9, 6, 9, 6][:n]
    return [(torch.randint(0, 11, (4, w), generator=g), torch.randint(0, 11, (4, w), generator=g))
            for w in widths]


def test_the_lm_step_is_the_plain_training_step_exactly():
    a, b = _tiny_lm(), _tiny_lm()
    opt_a, opt_b = make_optimizer(a, 1e-2), make_optimizer(b, 1e-2)
    step = _lm_step(b, opt_b)
    for i, (x, y) in enumerate(_batches_of_two_shapes()):
        for optimizer in (opt_a, opt_b):
            set_lr(optimizer, 1e-2 / (i + 1))
        loss_a = lm_loss(a(x), y)
        opt_a.zero_grad()
        loss_a.backward()
        torch.nn.utils.clip_grad_norm_(a.parameters(), 1.0)
        opt_a.step()
        assert torch.equal(loss_a.detach(), step(x, y))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_replayed_steps_train_exactly_like_eager_steps():
    a, b = _tiny_lm(), _tiny_lm()
    opt_a = make_graph_optimizer(torch.optim.AdamW(a.parameters(), lr=1e-2))
    opt_b = make_graph_optimizer(torch.optim.AdamW(b.parameters(), lr=1e-2))
    eager, recorder = _lm_step(a, opt_a), ReplayByRerunning()
    graphed = _lm_step(b, opt_b, graphed=True, recorder=recorder)
    losses_a, losses_b = [], []
    for i, (x, y) in enumerate(_batches_of_two_shapes()):
        lr = 1e-2 * (1 - i / 10)  # a schedule: the tensor learning rate must follow it
        set_lr(opt_a, lr)
        set_lr(opt_b, lr)
        losses_a.append(eager(x, y))
        losses_b.append(graphed(x, y))
    # two shapes: each runs eagerly once, is recorded at its second step, then replayed
    assert graphed.counts == {"eager": 2, "recorded": 2, "replayed": 5}
    assert recorder.records == 2
    # the returned losses are copies: a later replay does not overwrite an earlier one
    assert len({round(v.item(), 6) for v in losses_b}) == len(losses_b)
    for la, lb in zip(losses_a, losses_b):
        assert torch.equal(la, lb)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert opt_b.param_groups[0]["lr"].item() == pytest.approx(1e-2 * (1 - 8 / 10))


def test_the_least_recently_used_graph_is_dropped_and_recorded_again():
    model = _tiny_lm()
    optimizer = make_graph_optimizer(torch.optim.AdamW(model.parameters(), lr=1e-3))
    step = _lm_step(model, optimizer, graphed=True, recorder=ReplayByRerunning(), max_graphs=1)
    data = _batches_of_two_shapes()
    for i in (0, 1, 2, 5, 3, 6):  # shapes A A B B A A
        step(*data[i])
    assert step.counts == {"eager": 2, "recorded": 3, "replayed": 1}
    assert len(step.recorded) == 1


def test_graph_settings_are_checked():
    model = _tiny_lm()
    settings = RunSettings(torch.device("cpu"), cuda_graphs=True)
    assert graphs.graph_training(settings, Precision("cpu"))
    scaled = SimpleNamespace(scaler=SimpleNamespace(is_enabled=lambda: True))  # fp16's loss scaling
    assert not graphs.graph_training(settings, scaled)
    assert not graphs.graph_training(RunSettings(torch.device("cpu")), Precision("cpu"))
    stepped = torch.optim.AdamW(model.parameters())
    lm_loss(model(torch.zeros(1, 3, dtype=torch.long)), torch.zeros(1, 3, dtype=torch.long)).backward()
    stepped.step()
    with pytest.raises(ValueError, match="fresh"):
        make_graph_optimizer(stepped)
    with pytest.raises(TypeError, match="AdamW"):
        make_graph_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))


def test_the_graph_optimizer_keeps_every_group_setting():
    model = _tiny_lm()
    optimizer = make_graph_optimizer(make_optimizer(model, 3e-3))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["betas"] == (0.9, 0.95) and decay["fused"]
    assert isinstance(decay["lr"], torch.Tensor) and decay["lr"].item() == pytest.approx(3e-3)
    set_lr(optimizer, 1e-4)
    assert no_decay["lr"].item() == pytest.approx(1e-4)


def test_graphs_are_asked_for_by_environment_variable_on_cuda_only(monkeypatch):
    monkeypatch.delenv("RLHF_CUDA_GRAPHS", raising=False)
    assert not run_settings("cpu").cuda_graphs
    monkeypatch.setenv("RLHF_CUDA_GRAPHS", "1")
    assert not run_settings("cpu").cuda_graphs
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", lambda on: None)
    assert run_settings("cuda").cuda_graphs
    monkeypatch.setenv("RLHF_CUDA_GRAPHS", "yes")
    with pytest.raises(ValueError, match="RLHF_CUDA_GRAPHS='yes'"):
        run_settings("cpu")


def test_wider_sft_batches_give_the_same_loss():
    model = _tiny_lm().eval()
    g = torch.Generator().manual_seed(0)
    inputs = torch.zeros(8, 14, dtype=torch.long)
    targets = torch.full((8, 14), -100)
    for row in range(8):  # right-padded demonstrations of different lengths
        n = 3 + row
        inputs[row, :n] = torch.randint(1, 11, (n,), generator=g)
        targets[row, 1:n] = torch.randint(1, 11, (n - 1,), generator=g)
    (x, y), = _batches(inputs, targets, 8, None, shuffle=False)
    (xw, yw), = _batches(inputs, targets, 8, None, shuffle=False, width_multiple=8)
    assert x.size(1) == 10 and xw.size(1) == 14  # 10 rounded up to 16, capped at the full 14
    with torch.no_grad():
        assert sft_loss(model(xw), yw).item() == pytest.approx(sft_loss(model(x), y).item(), abs=1e-6)


class _LengthReward:
    def score(self, prompts, responses):
        return torch.tensor([float(len(r)) for r in responses])


def test_a_padded_rollout_gives_the_same_ppo_loss_and_statistics():
    words = ["\n", "q", "a", "b", "c"]
    tok = Tokenizer(words)
    torch.manual_seed(0)
    lm = GPT(GPTConfig(vocab_size=2 + len(words), n_layer=2, n_head=2, d_model=16, max_len=24))
    policy = PolicyWithValue(lm)
    cfg = PPOConfig(steps=1, prompts_per_step=6, minibatch_size=6, max_new_tokens=5)
    tasks = [Task("chat", "q " * n + "\n", {}) for n in (1, 2, 3, 1, 4, 2)]
    batch = rollout(policy, copy.deepcopy(lm), _LengthReward(), tok, tasks, cfg, 0.1,
                    torch.Generator().manual_seed(0))
    P = batch.prompt_width
    padded = pad_rollout(batch, P + 3, 5 + 2, tok.pad_id)
    assert padded.ids.shape == (6, P + 3 + 7) and padded.mask.shape == (6, 7)
    stats = []
    for b in (batch, padded):  # one update with lr 0: the statistics of the same step
        p = copy.deepcopy(policy)
        optimizer = torch.optim.AdamW(p.parameters(), lr=0.0)
        stats.append(ppo_update(p, optimizer, b, cfg, torch.Generator().manual_seed(0)))
    plain, wide = stats
    assert plain.keys() == wide.keys() == {"policy_loss", "value_loss", "entropy", "clip_fraction",
                                           "approx_kl", "ratio"}
    for k in plain:
        assert wide[k] == pytest.approx(plain[k], abs=1e-5)
    assert plain["value_loss"] != 0.0
    with pytest.raises(ValueError, match="does not fit"):
        pad_rollout(batch, P - 1, 7, tok.pad_id)


def test_one_decode_step_over_the_whole_cache_gives_the_forward_logits():
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=13, n_layer=2, n_head=2, d_model=16, max_len=16)).eval()
    ids, mask = left_pad([[3, 4, 5, 6, 7], [8, 9], [5, 5, 6]], pad_id=0)
    full = torch.cat([mask, torch.tensor([[1], [1], [0]])], 1)  # the third row's new token is padding
    new = torch.tensor([[10], [11], [0]])
    with torch.no_grad():
        expected = model(torch.cat([ids, new], 1), full)[:, -1]
        cache = KVCache(2, capacity=10)
        model(ids, mask, cache)  # the prompt fills slots 0-4
        for entry in cache.layers:  # junk in the slots no row may read
            entry[0][:, :, 6:] = 99.0
            entry[1][:, :, 6:] = -99.0
        key_mask = torch.zeros(3, 10, dtype=torch.long)
        key_mask[:, :6] = full
        position = (full.cumsum(-1) - 1).clamp(min=0)[:, -1:]
        slot_cache = graphs.SlotCache(2, capacity=10)
        slot_cache.layers, slot_cache.length = cache.layers, cache.length
        got = decode_step(model, new, position, key_mask, torch.tensor([5]), slot_cache)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_generation_with_a_graphed_decoder_samples_the_same_tokens():
    torch.manual_seed(4)
    model = GPT(GPTConfig(vocab_size=13, n_layer=2, n_head=2, d_model=16, max_len=24)).eval()
    batches = [[[3, 4, 5], [6, 7], [8, 9, 10]], [[5, 6, 7], [9], [4, 4, 4]], [[7, 8], [3], [6, 5, 4]]]
    for prompts in batches:  # the same shape three times: warm-up, recording, replays
        plain = generate(model, prompts, 8, eos_id=1, pad_id=0, generator=torch.Generator().manual_seed(0),
                         graphs=False)
        graphed = generate(model, prompts, 8, eos_id=1, pad_id=0, generator=torch.Generator().manual_seed(0),
                           graphs=True)
        for a, b in zip(plain, graphed):
            assert torch.equal(a, b)
    counts = graphed_decoder(model, 3, 3 + 8).counts
    assert counts["eager"] == 1 and counts["recorded"] == 1 and counts["replayed"] > 10


def test_a_wider_prompt_width_samples_the_same_tokens():
    torch.manual_seed(5)
    model = GPT(GPTConfig(vocab_size=13, n_layer=2, n_head=2, d_model=16, max_len=24)).eval()
    prompts = [[3, 4, 5], [6, 7], [8]]
    a = generate(model, prompts, 6, eos_id=1, pad_id=0, generator=torch.Generator().manual_seed(0))
    b = generate(model, prompts, 6, eos_id=1, pad_id=0, generator=torch.Generator().manual_seed(0),
                 prompt_width=7)
    assert b[0].shape == (3, 7) and torch.equal(a[2], b[2])
    with pytest.raises(ValueError, match="shorter than the longest"):
        left_pad(prompts, 0, width=2)


def test_ppo_with_recorded_steps_and_decoding_learns_the_bandit(monkeypatch):
    """The whole graph path of train_ppo (fixed-width rollouts, recorded decoding, recorded
    updates with the fused optimizer) on the CPU stand-in: it learns what eager PPO learns."""
    from test_ppo import WORDS, TokenReward, _prob_of_a, _tiny_policy

    made = []

    class Recording(GraphedStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ppo, "GraphedStep", Recording)
    tok = Tokenizer(WORDS)
    tasks = [Task("chat", "q\n", {}), Task("chat", "q q\n", {})] * 4
    cfg = ppo.PPOConfig(steps=40, prompts_per_step=32, minibatch_size=16, max_new_tokens=2, lr=3e-3,
                        value_lr=3e-3, kl_coef=0.0, no_eos_penalty=0.0, ppo_epochs=2)
    settings = RunSettings(torch.device("cpu"), cuda_graphs=True)  # the CPU stand-in for graphs
    policy, log = ppo.train_ppo(_tiny_policy(), TokenReward(), tok, tasks, cfg, seed=0, settings=settings)
    (step,) = made
    assert step.counts["recorded"] == 1 and step.counts["eager"] == 1
    assert step.counts["replayed"] == 40 * 2 * 2 - 2  # one shape for all 40 rollouts
    assert _prob_of_a(policy.lm, tok) > 0.8
    assert sum(log["rm_score"][-5:]) / 5 > 0.8


def test_choosing_a_cuda_device_turns_cudnn_attention_off(monkeypatch):
    """cuDNN's attention plans every new input shape, and our batches change shape (chapter 6).
    The switch is applied where the device is chosen, not on import, and not for the CPU."""
    from rlhf_minimal.device import pick_device

    calls = []
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", calls.append)
    assert pick_device("cpu").type == "cpu" and calls == []
    assert pick_device("cuda").type == "cuda" and calls == [False]


# --------------------------------------------------------------------------- on a real GPU
# benchmarks/gpu_check.sh runs this file first on the GPU; without CUDA these tests are skipped.
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_graph_training_matches_eager_training_on_the_gpu():
    a, b = _tiny_lm().cuda(), _tiny_lm().cuda()
    opt_a = make_graph_optimizer(torch.optim.AdamW(a.parameters(), lr=1e-2))
    opt_b = make_graph_optimizer(torch.optim.AdamW(b.parameters(), lr=1e-2))
    precision = Precision("cuda")
    if precision.scaler.is_enabled():
        pytest.skip("this GPU trains in fp16, whose steps are not recorded")
    eager, _ = lm_training_step(a, opt_a, precision)
    step_b, _ = lm_training_step(b, opt_b, precision)
    graphed = GraphedStep(step_b, "cuda")
    for i, (x, y) in enumerate(_batches_of_two_shapes()):
        x, y = x.cuda(), y.cuda()
        set_lr(opt_a, 1e-2 * (1 - i / 10))
        set_lr(opt_b, 1e-2 * (1 - i / 10))
        torch.testing.assert_close(eager(x, y), graphed(x, y), atol=1e-4, rtol=1e-4)
    assert graphed.counts == {"eager": 2, "recorded": 2, "replayed": 5}
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4)


@cuda
def test_cuda_graph_decoding_matches_the_forward_pass_on_the_gpu():
    torch.manual_seed(4)
    model = GPT(GPTConfig(vocab_size=13, n_layer=2, n_head=2, d_model=16, max_len=24)).cuda().eval()
    prompts = [[3, 4, 5], [6, 7], [8, 9, 10]]
    for _ in range(3):
        plain = generate(model, prompts, 8, eos_id=1, pad_id=0, temperature=0, graphs=False)
        graphed = generate(model, prompts, 8, eos_id=1, pad_id=0, temperature=0, graphs=True)
        assert torch.equal(plain[2], graphed[2])
    assert graphed_decoder(model, 3, 11).counts["replayed"] > 0

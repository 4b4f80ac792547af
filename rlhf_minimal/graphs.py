"""Training steps and generated tokens replayed from CUDA graphs (chapter 6, "Measured on a GPU").

A performance switch, outside the teaching path: every stage writes its training step in the
open, and this module only wraps such a step, or the model's forward pass for one token, without
changing what it computes.

At the `cpu` configuration a training step is a few hundred small kernels (embedding, three
blocks, loss, backward, clipping, AdamW), each launched from Python. On a GPU the launches, not
the arithmetic, set the pace: an H200 took about 10 ms for a pretraining step of the 0.4M-parameter
model, barely 6x the 58 ms of two CPU threads. A CUDA graph records the kernels of one step once and
replays them all with a single launch.

:class:`GraphedStep` wraps a stage's whole training step (forward, loss, backward, clipping,
optimizer) and works per input shape:

1. the first step of a shape runs eagerly; it also warms up (optimizer state, cuBLAS workspaces);
2. the second records the step into a graph, with copies of its inputs as the graph's fixed
   ("static") input buffers, and replays it;
3. every later step copies its inputs into those buffers and replays.

:class:`GraphedDecoder` does the same for the forward pass of one generated token
(:func:`decode_step`), the inner loop of every rollout.

What recording asks of a step, and why:

* read inputs only from its arguments (a graph replays fixed memory addresses);
* no host syncs (``.item()``, ``bool(tensor)``), which are not allowed while recording: the
  NaN/inf guard runs on the returned loss, outside the step;
* nothing that changes between steps may be a Python number inside the step: the learning rate
  is a one-element tensor in the optimizer (:func:`make_graph_optimizer`), set before each call;
* outputs are buffers that the next replay overwrites, so :class:`GraphedStep` returns copies.

Graphs are used when ``RLHF_CUDA_GRAPHS=1`` on a CUDA device (read once per run, by
:func:`rlhf_minimal.device.run_settings`). Training steps are recorded only when the precision
needs no loss scaling (bf16 or fp32): fp16's ``GradScaler`` keeps Python-side state from step to
step, and whether a recording of it stays correct has not been tested, so fp16 training steps (the
T4) stay eager. Generation runs without autocast and is recorded in any case.
"""
from __future__ import annotations

import dataclasses
import weakref
from collections import OrderedDict

import torch

from .model import GPT, KVCache


def make_graph_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """A recordable copy of a fresh AdamW: the same groups and settings, fused and capturable,
    with each group's learning rate in a one-element tensor on the parameters' device."""
    if not isinstance(optimizer, torch.optim.AdamW):
        raise TypeError(f"graphs need an AdamW optimizer, got {type(optimizer).__name__}")
    if optimizer.state:
        raise ValueError("make_graph_optimizer needs a fresh optimizer (one that has not stepped)")
    groups = []
    for group in optimizer.param_groups:
        device = group["params"][0].device
        settings = {k: v for k, v in group.items() if k not in ("params", "foreach", "fused", "capturable")}
        settings["lr"] = torch.tensor(float(group["lr"]), device=device)
        groups.append({"params": group["params"], **settings})
    return torch.optim.AdamW(groups, fused=True, capturable=True)


class CudaGraphRecorder:
    """Records a function into a ``torch.cuda.CUDAGraph``; the graph's replay runs it again."""

    def record(self, fn):
        # torch.cuda.graph runs the recording on a side stream and synchronises around it
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = fn()
        return graph, outputs

    def __init__(self):
        self.side_stream = None

    def eager(self, fn):
        # warm-up steps run on a side stream, as the CUDA-graph documentation asks
        stream = self.side_stream = self.side_stream or torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            outputs = fn()
        torch.cuda.current_stream().wait_stream(stream)
        return outputs


class RerunRecorder:
    """The CPU's stand-in for CUDA graphs, with the same visible behaviour: recording runs the
    function (CUDA only records it and the first replay runs it, so here the first replay after
    a recording does nothing); later replays run the recorded function again and write its
    results into the recorded output tensors, as a graph writes into its output memory. It lets
    the tests check, without a GPU, that every input goes through the static buffers."""

    def record(self, fn):
        outputs = fn()
        first = [True]

        def replay():
            if first[0]:
                first[0] = False
                return
            for buffer, value in zip(_tensors(outputs), _tensors(fn())):
                buffer.copy_(value)
        return _Replayable(replay), outputs

    def eager(self, fn):
        return fn()


class _Replayable:
    def __init__(self, replay):
        self.replay = replay


def default_recorder(device):
    """CUDA graphs on a CUDA device, :class:`RerunRecorder` elsewhere."""
    return CudaGraphRecorder() if torch.device(device).type == "cuda" else RerunRecorder()


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in ``value``: a tensor, a tuple, list or dict of them, or a dataclass."""
    if isinstance(value, torch.Tensor):
        return [value]
    if dataclasses.is_dataclass(value):
        value = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _map_tensors(fn, value):
    """``value`` with ``fn`` applied to each of its tensors (the same structure as :func:`_tensors`)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _map_tensors(fn, getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(fn, v) for v in value)
    return value


def copy_outputs(outputs):
    """Detached copies of a step's outputs (a replay overwrites the recorded ones)."""
    return _map_tensors(lambda t: t.detach().clone(), outputs)


class GraphedStep:
    """``graphed(*inputs)`` runs the training step ``fn(*inputs)``, recorded and replayed per
    input shape (see the module doc); it returns copies of ``fn``'s outputs.

    ``inputs`` are tensors or dataclasses of tensors (a PPO minibatch). At most ``max_graphs``
    graphs are kept, the least recently used dropped first. ``recorder`` is for the tests, which
    check the bookkeeping on the CPU with a stand-in for CUDA graphs. A stage that builds its step
    function anew for each call (PPO, per rollout) hands it over with :meth:`wrap`.
    """

    def __init__(self, fn, device, max_graphs: int = 8, recorder=None):
        self.fn, self.max_graphs = fn, max_graphs
        self.recorder = recorder or default_recorder(device)
        self.seen: set = set()
        self.recorded: OrderedDict = OrderedDict()  # shape key -> (graph, static inputs, outputs)
        self.counts = {"eager": 0, "recorded": 0, "replayed": 0}

    def wrap(self, fn) -> "GraphedStep":
        """Run ``fn`` from now on. It must compute what the earlier one did (the same model,
        optimizer and settings): graphs recorded from the earlier one are replayed for it."""
        self.fn = fn
        return self

    def __call__(self, *inputs):
        tensors = _tensors(inputs)
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        if key in self.recorded:
            graph, static, outputs = self.recorded[key]
            self.recorded.move_to_end(key)
            for buffer, value in zip(_tensors(static), tensors):
                buffer.copy_(value)
            self.counts["replayed"] += 1
        elif key not in self.seen:
            self.seen.add(key)
            self.counts["eager"] += 1
            return copy_outputs(self.recorder.eager(lambda: self.fn(*inputs)))
        else:
            static = _map_tensors(torch.clone, inputs)
            fn = self.fn
            graph, outputs = self.recorder.record(lambda: fn(*static))
            self.recorded[key] = (graph, static, outputs)
            if len(self.recorded) > self.max_graphs:
                self.recorded.popitem(last=False)
            self.counts["recorded"] += 1
        graph.replay()
        return copy_outputs(outputs)


def graph_training(settings, precision) -> bool:
    """Whether training steps are recorded: CUDA graphs asked for (``settings.cuda_graphs``, on a
    CUDA device only) and a precision without loss scaling (fp16's cannot be recorded)."""
    return settings.cuda_graphs and not precision.scaler.is_enabled()


class SlotCache(KVCache):
    """A :class:`KVCache` of fixed buffers for :func:`decode_step`: the one new key and value of a
    call go to cache slot ``slot`` (a device tensor) and the whole buffers come back, unwritten
    slots included, so shapes and addresses stay the same at every token (what a graph needs)."""

    slot: torch.Tensor | None = None

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if self.slot is None:
            return super().update(layer, k, v)
        entry = self.layers[layer]
        entry[0].index_copy_(2, self.slot, k)
        entry[1].index_copy_(2, self.slot, v)
        return entry[0], entry[1]


def decode_step(model: GPT, token, position, key_mask, slot, cache: SlotCache):
    """Logits ``[B, vocab]`` for one new token per row, attending over the whole cache.

    ``token`` and ``position`` are ``[B, 1]``; ``key_mask`` ``[B, capacity]`` is 1 on the cache
    slots a row may attend to; ``slot`` (a one-element long tensor) is where this token's keys
    and values go, and the token always attends to itself. Every shape is fixed by the cache's
    capacity and nothing is read back to the host, so a CUDA graph can record this call once and
    replay it for every token. It computes what ``GPT.forward`` computes for the last token, over
    masked-out slots that get zero weight.
    """
    slots = torch.arange(cache.capacity, device=token.device)
    allowed = (key_mask.bool() | (slots == slot)[None])[:, None, None, :]
    x = model.tok_emb(token) + model.pos_emb(position)
    cache.slot = slot
    try:
        for i, block in enumerate(model.blocks):
            x = block(x, allowed, cache, i)
    finally:
        cache.slot = None
    return model.head(model.ln_f(x))[:, -1]


class GraphedDecoder:
    """:func:`decode_step` for one batch size and cache capacity, replayed from a CUDA graph.

    It owns the KV cache (the graph reads and writes these buffers at fixed addresses, so they
    outlive one ``generate`` call) and the static inputs. ``generate`` fills the cache with the
    prompt in an ordinary forward pass, then calls the decoder once per token: the first call
    runs eagerly (the warm-up), the second records, and later calls only copy four small tensors
    and replay. Slots that an earlier call left in the cache are masked out, never read.
    """

    def __init__(self, model: GPT, batch: int, capacity: int, recorder=None):
        param = next(model.parameters())
        cfg = model.config
        # a weak reference: the registry below must not keep a model (and its cache) alive
        self.model = weakref.ref(model)
        self.recorder = recorder or default_recorder(param.device)
        self.cache = SlotCache(cfg.n_layer, capacity)
        shape = (batch, cfg.n_head, capacity, cfg.d_model // cfg.n_head)
        for entry in self.cache.layers:
            entry[0] = torch.zeros(shape, dtype=param.dtype, device=param.device)
            entry[1] = torch.zeros(shape, dtype=param.dtype, device=param.device)
        long = {"dtype": torch.long, "device": param.device}
        self.token, self.position = torch.zeros(batch, 1, **long), torch.zeros(batch, 1, **long)
        self.key_mask, self.slot = torch.zeros(batch, capacity, **long), torch.zeros(1, **long)
        self.graph, self.logits, self.warmed = None, None, False
        self.counts = {"eager": 0, "recorded": 0, "replayed": 0}

    def start(self) -> KVCache:
        """An empty cache for a new batch of prompts (the buffers are reused)."""
        self.cache.length = 0
        return self.cache

    def _step(self):
        return (decode_step(self.model(), self.token, self.position, self.key_mask, self.slot, self.cache),)

    def __call__(self, token, position, key_mask, slot: int) -> torch.Tensor:
        """Logits ``[B, vocab]`` of the token at cache slot ``slot`` (see :func:`decode_step`)."""
        self.token.copy_(token)
        self.position.copy_(position)
        self.key_mask.copy_(key_mask)
        self.slot.fill_(slot)
        if self.graph is None and not self.warmed:
            self.warmed = True
            self.counts["eager"] += 1
            return self.recorder.eager(self._step)[0]
        if self.graph is None:
            self.graph, (self.logits,) = self.recorder.record(self._step)
            self.counts["recorded"] += 1
        else:
            self.counts["replayed"] += 1
        self.graph.replay()
        return self.logits.clone()


_DECODERS: weakref.WeakKeyDictionary[GPT, OrderedDict] = weakref.WeakKeyDictionary()


def graphed_decoder(model: GPT, batch: int, capacity: int, keep: int = 4) -> GraphedDecoder:
    """The model's decoder for this batch size and capacity, made on first use; each model keeps
    its ``keep`` most recently used ones (each holds a KV cache)."""
    decoders = _DECODERS.setdefault(model, OrderedDict())
    key = (batch, capacity)
    if key not in decoders:
        decoders[key] = GraphedDecoder(model, batch, capacity)
        if len(decoders) > keep:
            decoders.popitem(last=False)
    decoders.move_to_end(key)
    return decoders[key]

"""Training steps and generated tokens, run eagerly or replayed from CUDA graphs (chapter 6,
"Measured on a GPU").

At the `cpu` configuration a training step is a few hundred small kernels (embedding, three
blocks, loss, backward, clipping, AdamW), each launched from Python. On a GPU the launches, not
the arithmetic, set the pace: an H200 took about 10 ms for a pretraining step of the 0.4M-parameter
model, barely 6x the 58 ms of two CPU threads. A CUDA graph records the kernels of one step once and
replays them all with a single launch.

:class:`TrainStep` wraps a stage's loss function and does the rest of a step: learning rate, the
NaN/inf guard, backward, gradient clipping and the optimizer. Eagerly (the CPU, and a GPU unless
asked) it does exactly what the training loops always did. With graphs it works per input shape:

1. the first step of a shape runs eagerly; it also warms up (optimizer state, cuBLAS workspaces);
2. the second records the step into a graph, with copies of its inputs as the graph's fixed
   ("static") input buffers, and replays it;
3. every later step copies its inputs into those buffers and replays.

:class:`GraphedDecoder` does the same for the forward pass of one generated token
(:meth:`GPT.decode_step`), the inner loop of every rollout.

What recording asks of a loss function, and why:

* read inputs only from its arguments (a graph replays fixed memory addresses);
* no host syncs (``.item()``, ``bool(tensor)``), which are not allowed while recording;
* nothing that changes between steps may be a Python number inside the step: the learning rate
  is a one-element tensor in the optimizer (:func:`make_graph_optimizer`), refilled before each
  replay, and the step index for the guard stays outside the graph;
* outputs are buffers that the next replay overwrites, so :class:`TrainStep` returns copies.

Graphs are used when ``RLHF_CUDA_GRAPHS=1`` on a CUDA device. Training steps are recorded only
when the precision needs no loss scaling (bf16 or fp32): fp16's ``GradScaler`` keeps Python-side
state from step to step, and whether a recording of it stays correct has not been tested, so fp16
training steps (the T4) stay eager. Generation runs without autocast and is recorded in any case.
In fp16 the fused optimizer still spares the scaler its per-step host sync.
"""
from __future__ import annotations

import os
import weakref
from collections import OrderedDict

import torch

from .model import GPT, KVCache

ENV_VAR = "RLHF_CUDA_GRAPHS"


def graphs_requested(device) -> bool:
    """True when ``$RLHF_CUDA_GRAPHS`` asks for graphs and ``device`` is a CUDA device.

    Values: ``1`` (on) or ``0``/unset (off); anything else is an error.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV_VAR}={value!r}: use 1 to record training steps as CUDA graphs, "
                         "or 0 (or leave it unset) to run them eagerly")
    return value == "1" and torch.device(device).type == "cuda"


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate, in place when it is a tensor (so a graph sees it)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


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
            for buffer, value in zip(outputs, fn()):
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


class TrainStep:
    """One training step: ``outputs = step(index, lr, *inputs)``.

    ``loss_fn(*inputs)`` runs the forward pass (under the precision's autocast, which is its
    job) and returns a tuple whose first element is the loss; the others are statistics to
    report, computed without gradient. The step sets the learning rate (``lr=None`` leaves it),
    checks the loss with ``guard``, then calls ``precision.step`` (backward, clipping, optimizer).
    It returns detached copies of ``loss_fn``'s outputs.

    ``graphs=True`` records and replays the step per input shape (see the module doc); at most
    ``max_graphs`` graphs are kept, the least recently used dropped first. ``recorder`` is for the
    tests, which check the bookkeeping on the CPU with a stand-in for CUDA graphs.
    """

    def __init__(self, loss_fn, model, optimizer, precision, guard, max_grad_norm: float = 1.0,
                 graphs: bool = False, max_graphs: int = 8, recorder=None):
        if graphs and precision.scaler.is_enabled():
            raise ValueError("TrainStep does not record fp16 training with loss scaling (see "
                             "rlhf_minimal.graphs); use bf16 or fp32 (RLHF_PRECISION), or graphs=False")
        if graphs and not any(isinstance(g["lr"], torch.Tensor) for g in optimizer.param_groups):
            raise ValueError("CUDA graphs need the learning rate in a tensor: build the optimizer "
                             "with make_graph_optimizer")
        self.loss_fn, self.model, self.optimizer = loss_fn, model, optimizer
        self.precision, self.guard, self.max_grad_norm = precision, guard, max_grad_norm
        self.graphs, self.max_graphs = graphs, max_graphs
        self.recorder = recorder or (default_recorder(next(model.parameters()).device) if graphs else None)
        self.seen: set = set()
        self.recorded: OrderedDict = OrderedDict()  # shape key -> (graph, static inputs, outputs)
        self.counts = {"eager": 0, "recorded": 0, "replayed": 0}

    def _body(self, *inputs, check=None):
        outputs = self.loss_fn(*inputs)
        if check is not None:  # eagerly, the loss is checked before it can reach the weights
            check(outputs[0])
        self.precision.step(outputs[0], self.model, self.optimizer, self.max_grad_norm)
        return tuple(o.detach() for o in outputs)

    def __call__(self, index: int, lr: float | None, *inputs):
        if lr is not None:
            set_lr(self.optimizer, lr)
        if not self.graphs:
            self.counts["eager"] += 1
            return self._body(*inputs, check=lambda loss: self.guard(loss, index))
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        if key in self.recorded:
            graph, static, outputs = self.recorded[key]
            self.recorded.move_to_end(key)
            for buffer, value in zip(static, inputs):
                buffer.copy_(value)
            self.counts["replayed"] += 1
        elif key not in self.seen:
            self.seen.add(key)
            outputs = self.recorder.eager(lambda: self._body(*inputs))
            self.counts["eager"] += 1
            self.guard(outputs[0], index)
            return outputs
        else:
            static = [t.clone() for t in inputs]
            graph, outputs = self.recorder.record(lambda: self._body(*static))
            self.recorded[key] = (graph, static, outputs)
            if len(self.recorded) > self.max_graphs:
                self.recorded.popitem(last=False)
            self.counts["recorded"] += 1
        graph.replay()
        outputs = tuple(o.clone() for o in outputs)
        self.guard(outputs[0], index)
        return outputs


def records_training(device, precision) -> bool:
    """Whether training steps on ``device`` are recorded: :func:`graphs_requested`, and a precision
    without loss scaling (fp16's cannot be recorded, see the module doc)."""
    return graphs_requested(device) and not precision.scaler.is_enabled()


def make_train_step(loss_fn, model, optimizer, precision, guard, max_grad_norm: float = 1.0) -> TrainStep:
    """The stages' way to build a :class:`TrainStep`: recorded when :func:`records_training` says
    so for the model's device, with the optimizer made recordable; eager otherwise."""
    graphs = records_training(next(model.parameters()).device, precision)
    if graphs:
        optimizer = make_graph_optimizer(optimizer)
    return TrainStep(loss_fn, model, optimizer, precision, guard, max_grad_norm, graphs=graphs)


class GraphedDecoder:
    """:meth:`GPT.decode_step` for one batch size and cache capacity, replayed from a CUDA graph.

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
        self.cache = KVCache(cfg.n_layer, capacity)
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
        return (self.model().decode_step(self.token, self.position, self.key_mask, self.slot, self.cache),)

    def __call__(self, token, position, key_mask, slot: int) -> torch.Tensor:
        """Logits ``[B, vocab]`` of the token at cache slot ``slot`` (see GPT.decode_step)."""
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

"""rlhf_minimal: RLHF from scratch, the package behind the course.

A reader's route through the core: ``world`` (the toy world, from a seed) and ``judge`` (its gold
judge) -> ``model`` (a plain GPT and its KV cache; ``sampling`` draws from it) -> ``pretrain``
(stage 0) -> ``sft`` (stage 1: pretraining's step on demonstrations) -> ``preference`` (sampled
answers ranked by simulated labelers) -> ``reward`` (stage 2, the pairwise loss) -> ``ppo``
(stage 3: ``rollout`` fills a ``Rollout``, ``ppo_update`` is the whole update on one screen).

Around it: ``evaluate`` scores and compares policies; ``scale`` holds every scale's presets in one
table (``scale.PRESETS``); ``device`` chooses the device and reads the environment once per run;
``cache`` keeps each stage's output, keyed by its configuration and the code it imports (and
``pieces`` by the source of a student's pieces, labs 4, 5 and 11); ``train``
has what every stage shares (seeding, optimizer, schedule, precision, the NaN guard); ``graphs``
replays steps from CUDA graphs without changing them (a performance switch, off by default).
Beyond the core: ``dpo``, ``hallucination``, ``generalization``, ``overoptimization``, ``hf``,
``export`` and ``interop`` (chapter 7), ``pipeline`` and ``bench`` (chapter 6).
"""
__version__ = "0.1.0"

"""rlhf_minimal: RLHF from scratch, the package behind the course.

Stages: 0 pretraining (``pretrain``), 1 supervised fine-tuning (``sft``),
2 reward model (``reward``), 3 PPO (``ppo``). The toy world is ``world``,
its gold judge ``judge``, the model ``model``, the scale switch ``scale``.
"""
__version__ = "0.1.0"

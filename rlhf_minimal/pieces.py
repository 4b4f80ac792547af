"""The cache key of a run trained with other pieces than the package's own.

Labs 4, 5 and 11 train with functions the student wrote: :class:`~rlhf_minimal.reward.RewardPieces`,
:class:`~rlhf_minimal.ppo.PPOPieces` and :class:`~rlhf_minimal.dpo.DPOPieces`, frozen dataclasses
whose defaults are the package's functions. A stage puts :func:`pieces_key` into its cache key: the
package's pieces, passed or not, keep the package's entry; other pieces get an entry of their own,
named by the source of each function that differs, so a student's run is never served the
package's weights and never replaces them.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import fields


def source_hash(fn) -> str:
    """A short hash of a function's source (what ``inspect`` finds, a notebook cell's included), or
    of its compiled code when there is no source to read."""
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is None:
            raise TypeError(f"cannot key the stage cache on {fn!r}: pass a function (def or lambda)") from None
        text = code.co_code + repr((code.co_consts, code.co_names, code.co_varnames)).encode()
    return hashlib.sha256(text).hexdigest()[:12]


def pieces_key(pieces, default) -> dict | None:
    """None when every field of ``pieces`` is the same object as in ``default`` (the package's own
    pieces); otherwise ``{field: source_hash}`` for each field that differs. Only a piece's own
    source counts, not the helpers it calls: after changing a helper, run the cell that defines the
    piece again or pass ``fresh=True`` to the stage."""
    changed = {f.name: source_hash(getattr(pieces, f.name)) for f in fields(pieces)
               if getattr(pieces, f.name) is not getattr(default, f.name)}
    return changed or None

"""A word-level tokenizer for the world's text.

Words are separated by single spaces and ``"\\n"`` is a token of its own, so for every text the
world produces ``decode(encode(text)) == text``. ``<pad>`` (id 0) and ``<eos>`` (id 1) are
distinct: padding is never mistaken for the end of a response.

Text outside the vocabulary raises :class:`UnknownWordError` naming the words; there is no UNK
token, so nothing is silently replaced.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

PAD, EOS = "<pad>", "<eos>"
_TOKEN = re.compile(r"\n|[^ \n]+")


class UnknownWordError(ValueError):
    pass


class Tokenizer:
    def __init__(self, words: list[str]):
        if PAD in words or EOS in words:
            raise ValueError("the word list must not contain the special tokens")
        self.itos = [PAD, EOS] + list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("the word list has duplicates")
        self.pad_id, self.eos_id = 0, 1

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        words = _TOKEN.findall(text)
        unknown = sorted({w for w in words if w not in self.stoi or w in (PAD, EOS)})
        if unknown:
            raise UnknownWordError(
                f"words not in the vocabulary: {', '.join(repr(w) for w in unknown[:10])} "
                f"(in {text[:60]!r}). The tokenizer knows only the world's words: write lower "
                "case, put spaces around punctuation, and use names from the world.")
        ids = [self.stoi[w] for w in words]
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids, skip_special: bool = True) -> str:
        out = ""
        for i in ids:
            i = int(i)
            if skip_special and i in (self.pad_id, self.eos_id):
                continue
            word = self.itos[i]
            if word == "\n":
                out += "\n"
            else:
                out += (" " if out and not out.endswith("\n") else "") + word
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": self.itos[2:]}, indent=0))

    @staticmethod
    def load(path: str | Path) -> "Tokenizer":
        return Tokenizer(json.loads(Path(path).read_text())["words"])

    @staticmethod
    def for_world(world) -> "Tokenizer":
        return Tokenizer(world.vocabulary())

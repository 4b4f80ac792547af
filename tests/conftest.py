import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def ci_world():
    from rlhf_minimal.world import make_world
    return make_world(0, "ci")


@pytest.fixture(scope="session")
def tokenizer(ci_world):
    from rlhf_minimal.tokenizer import Tokenizer
    return Tokenizer.for_world(ci_world)


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class DigitTokenizer:
    """A stand-in tokenizer for tests on tiny models: each word is its own id (EOS 1, pad 0)."""
    eos_id, pad_id = 1, 0

    def encode(self, text):
        return [int(w) for w in text.split()]


@pytest.fixture
def digit_tokenizer():
    return DigitTokenizer()

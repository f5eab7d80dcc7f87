"""The prose prompts are cut from: original English text shipped in the package."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def load_corpus() -> str:
    """``etalon/data/corpus/corpus.txt`` with all whitespace runs collapsed to one space.

    Collapsing makes every word boundary a single space, so character and token offsets into
    the corpus behave the same wherever a prompt starts.
    """
    resource = resources.files("etalon").joinpath("data").joinpath("corpus").joinpath("corpus.txt")
    text = " ".join(resource.read_text(encoding="utf-8").split())
    if not text:
        raise RuntimeError("the packaged prompt corpus etalon/data/corpus/corpus.txt is empty")
    return text

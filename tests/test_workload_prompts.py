"""Tokenizers and prompt building: exact token counts under real (locally trained) tokenizers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from etalon.workload import ApproxTokenizer, PromptBuilder, load_corpus, load_tokenizer
from hf_tokenizer import train_tokenizer

tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

SIZES = (1, 2, 3, 5, 17, 64, 257, 1000, 4096)


def _train(tmp_path: Path, kind: str) -> Path:
    """A small tokenizer trained on the packaged corpus, saved as tokenizer.json (no internet)."""
    return train_tokenizer(tmp_path / kind, kind)


@pytest.fixture(scope="module", params=["bytelevel", "metaspace"])
def trained(request, tmp_path_factory):
    return _train(tmp_path_factory.mktemp("tok"), request.param)


def test_approx_tokenizer_counts_four_chars_per_token():
    tok = ApproxTokenizer()
    assert tok.exact is False
    assert [tok.count("x" * k) for k in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    text = "Tides rise twice a day."
    ids = tok.encode(text)
    assert len(ids) == tok.count(text) == 6
    assert tok.decode(ids) == text
    assert load_tokenizer(None).exact is False and load_tokenizer("").exact is False


def test_approx_prompts_have_exact_estimated_length_and_differ():
    tok = ApproxTokenizer()
    builder = PromptBuilder(tok, seed=7)
    for rid in range(50):
        for n in SIZES + (50_000,):  # 50k tokens wraps the corpus several times
            prompt = builder.build(n, rid)
            assert len(prompt) == 4 * n and tok.count(prompt) == n
    heads = {builder.build(1000, rid)[:64] for rid in range(500)}
    assert len(heads) == 500  # distinct from the first characters: no shared prefix


def test_approx_prompts_are_fast():
    builder = PromptBuilder(ApproxTokenizer(), seed=1)
    start = time.perf_counter()
    prompts = [builder.build(1000, rid) for rid in range(10_000)]
    elapsed = time.perf_counter() - start
    assert len(prompts) == 10_000
    assert elapsed < 3.0, f"10k prompts of 1000 tokens took {elapsed:.2f}s"


def test_prompts_reproducible_and_seed_dependent():
    a = PromptBuilder(ApproxTokenizer(), seed=3)
    b = PromptBuilder(ApproxTokenizer(), seed=3)
    c = PromptBuilder(ApproxTokenizer(), seed=4)
    same = [a.build(300, rid) == b.build(300, rid) for rid in range(20)]
    differ = [a.build(300, rid) != c.build(300, rid) for rid in range(20)]
    assert all(same) and sum(differ) >= 18


def test_loaded_tokenizer_is_exact_and_round_trips(trained):
    tok = load_tokenizer(str(trained))
    assert tok.exact is True
    text = "A lighthouse marks a place where ships are in danger."
    assert tok.decode(tok.encode(text)).strip() == text
    assert tok.count(text) == len(tok.encode(text)) > 0
    # A tokenizer.json file path works as well as its directory.
    assert load_tokenizer(str(trained / "tokenizer.json")).encode(text) == tok.encode(text)


def test_prompts_have_exact_token_counts_with_real_tokenizer(trained):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = load_tokenizer(str(trained))
    raw = Tokenizer.from_file(str(trained / "tokenizer.json"))  # independent of our wrapper
    fast = PreTrainedTokenizerFast(tokenizer_file=str(trained / "tokenizer.json"))
    builder = PromptBuilder(tok, seed=11)
    corpus_tokens = len(raw.encode(load_corpus()).ids)
    for rid in range(40):
        for n in SIZES:
            prompt, counted = builder.build_counted(n, rid)
            assert counted == n
            assert len(raw.encode(prompt, add_special_tokens=False).ids) == n, (rid, n)
            assert len(fast.encode(prompt, add_special_tokens=False)) == n, (rid, n)
    longer = builder.build(corpus_tokens + 500, 3)  # wraps around the corpus
    assert len(raw.encode(longer, add_special_tokens=False).ids) == corpus_tokens + 500


def test_real_tokenizer_prompts_differ_from_the_first_tokens(trained):
    tok = load_tokenizer(str(trained))
    builder = PromptBuilder(tok, seed=0)
    firsts = {tuple(tok.encode(builder.build(200, rid))[:8]) for rid in range(300)}
    assert len(firsts) == 300


def test_missing_tokenizer_path_is_one_line_error(tmp_path):
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(ValueError) as err:
        load_tokenizer(str(missing))
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match="cannot load a tokenizer from"):
        load_tokenizer(str(empty_dir))


def test_builder_rejects_bad_sizes():
    builder = PromptBuilder(ApproxTokenizer(), seed=0)
    with pytest.raises(ValueError):
        builder.build(0, 1)
    with pytest.raises(ValueError):
        builder.build(10, -1)
    assert np.isscalar(builder.build_counted(5, 1)[1])


class PairTokenizer:
    """A deliberately awkward 'exact' tokenizer: every word is two tokens, so odd counts are
    impossible. The builder must then report the true count rather than claim the target."""

    name = "pairs"
    exact = True

    def encode(self, text: str) -> list[int]:
        return [t for w in text.split() for t in (1, len(w))]

    def decode(self, ids: list[int]) -> str:
        return " ".join(
            "w" * max(1, ids[i + 1] if i + 1 < len(ids) else 1) for i in range(0, len(ids), 2)
        )

    def count(self, text: str) -> int:
        return len(self.encode(text))


def test_unreachable_count_reports_true_count_and_warns(caplog):
    tok = PairTokenizer()
    builder = PromptBuilder(tok, seed=0)
    text, counted = builder.build_counted(10, 1)
    assert counted == tok.count(text) == 10
    with caplog.at_level("WARNING"):
        text, counted = builder.build_counted(11, 2)
    assert counted == tok.count(text) and counted in (10, 12)
    assert "could not build a prompt of exactly 11 tokens" in caplog.text

"""Tokenizers for prompt building and token counting: a real one, or a documented estimate.

A local Hugging Face tokenizer gives exact counts. Without one, ``ApproxTokenizer`` counts
``ceil(len(text) / 4)`` tokens (the common ~4 characters per token rule for English); its
``exact`` flag is False so records can say where a count came from.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from etalon.cli_errors import UserError


@runtime_checkable
class Tokenizer(Protocol):
    """What the workload needs from a tokenizer. Counts exclude special tokens (BOS/EOS)."""

    name: str
    exact: bool

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...

    def count_chat(self, messages: list[dict]) -> int | None: ...


class ApproxTokenizer:
    """One token per 4 characters (Unicode code points); the last token may be shorter.

    ``count(text) == ceil(len(text) / 4)`` exactly. ``encode`` cuts the text into those 4-char
    pieces and numbers each distinct piece in order of first sight (ids are stable within a
    process only); ``decode`` joins the pieces back, so ``decode(encode(t)) == t``.
    """

    CHARS_PER_TOKEN = 4
    name = "approx-4-chars-per-token"
    exact = False

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._pieces: list[str] = []
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        return -(-len(text) // self.CHARS_PER_TOKEN)

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def count_chat(self, messages: list[dict]) -> int | None:
        """None: an estimate knows no chat template."""
        return None

    def encode(self, text: str) -> list[int]:
        step = self.CHARS_PER_TOKEN
        pieces = [text[i : i + step] for i in range(0, len(text), step)]
        with self._lock:
            for piece in pieces:
                if piece not in self._ids:
                    self._ids[piece] = len(self._pieces)
                    self._pieces.append(piece)
            return [self._ids[p] for p in pieces]

    def decode(self, ids: list[int]) -> str:
        try:
            return "".join(self._pieces[i] for i in ids)
        except (IndexError, TypeError):
            raise UserError(f"{self.name}: ids were not produced by this tokenizer") from None


class HFTokenizer:
    """Wraps a Hugging Face tokenizer; counts exclude the special tokens a server may add."""

    exact = True

    def __init__(self, hf_tokenizer: Any, name: str) -> None:
        self.hf = hf_tokenizer
        self.name = name

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def count_many(self, texts: list[str]) -> list[int]:
        """``[count(t) for t in texts]`` in one batched call (a stream's chunks, after it ends)."""
        if not texts:
            return []
        return [len(ids) for ids in self.hf(list(texts), add_special_tokens=False)["input_ids"]]

    def count_chat(self, messages: list[dict]) -> int | None:
        """Tokens of ``messages`` as the tokenizer's chat template renders them, with the
        generation prompt (what an OpenAI chat server feeds the model); None without a template.

        A template that fails to render is a ``ValueError`` naming the tokenizer.
        """
        if not getattr(self.hf, "chat_template", None):
            return None
        try:
            ids = self.hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        except Exception as exc:  # noqa: BLE001 - jinja and transformers raise many types
            raise UserError(f"tokenizer {self.name}: its chat template failed: "
                             f"{_first_line(exc)}") from None
        if hasattr(ids, "keys"):  # a BatchEncoding (transformers 5) rather than a list of ids
            ids = ids["input_ids"]
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return len(ids)

    # Markers a token's piece starts with when it begins a word: byte-level BPE ("\u0120"),
    # SentencePiece ("\u2581"), or a literal space.
    WORD_MARKERS = ("\u0120", "\u2581", " ")

    def word_starts(self, ids: list[int]) -> list[bool]:
        """Which tokens begin a word, so prompts can start on a word, not mid-word."""
        pieces = self.hf.convert_ids_to_tokens(list(ids))
        return [isinstance(p, str) and p.startswith(self.WORD_MARKERS) for p in pieces]


def load_tokenizer(path: str | None) -> Tokenizer:
    """A local Hugging Face tokenizer (directory, ``tokenizer.json``, or a model id already in
    the local cache), or ``ApproxTokenizer`` when ``path`` is None or empty. Never downloads."""
    if not path:
        return ApproxTokenizer()
    try:
        import transformers
    except ImportError:
        raise UserError(
            f"loading tokenizer '{path}' needs transformers: pip install 'etalon[tokenizers]'"
        ) from None
    local = Path(path).expanduser()
    if local.is_file():
        if local.suffix == ".json":
            return HFTokenizer(_fast_from_file(transformers, local, path), str(path))
        local = local.parent
    if local.is_dir():
        try:
            hf = transformers.AutoTokenizer.from_pretrained(str(local), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types here
            if not (local / "tokenizer.json").is_file():
                raise UserError(
                    f"cannot load a tokenizer from '{path}': {_first_line(exc)}"
                ) from None
            # A bare tokenizer.json without tokenizer_config.json: load it directly.
            hf = _fast_from_file(transformers, local / "tokenizer.json", path)
        return HFTokenizer(hf, str(path))
    try:
        hf = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception:  # noqa: BLE001
        raise UserError(
            f"tokenizer path '{path}' does not exist (and is not a model in the local "
            "Hugging Face cache)"
        ) from None
    return HFTokenizer(hf, str(path))


def _fast_from_file(transformers: Any, file: Path, shown: str) -> Any:
    try:
        return transformers.PreTrainedTokenizerFast(tokenizer_file=str(file))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot load tokenizer file '{shown}': {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

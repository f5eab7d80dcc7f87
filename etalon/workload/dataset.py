"""Real prompts from a local dataset file: what people actually send, not corpus cut to length.

Two shapes are read, and told apart by their keys:

* ShareGPT conversations — a JSON list, or JSONL, of objects with ``conversations`` (or
  ``messages``): turns with ``from``/``value`` (or ``role``/``content``). A request is the first
  user turn; its output length is the length of the reply that follows it, as ``vllm bench``
  samples ShareGPT.
* Prompt rows — JSONL of ``{"prompt": str, "output_tokens": int}``.

Token counts use ``dataset_tokenizer`` (a local Hugging Face tokenizer folder) when given, else
etalon's ``ceil(characters / 4)``. Prompts are used whole: a row longer than
``--request-generator-max-tokens`` in total is left out rather than cut. Rows are drawn in a
random order fixed by the workload's seed (its length stream), cycling when the run asks for
more requests than the file has. Nothing is downloaded: the file is the user's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from etalon.cli_errors import UserError
from etalon.options import option

from .lengths import LengthGenerator, register

if TYPE_CHECKING:
    from .config import WorkloadConfig

FLAG = "--dataset-request-length-generator-dataset-file"
USER_ROLES = ("human", "user")
REPLY_ROLES = ("gpt", "assistant", "chatgpt", "bard", "model")


@dataclass(frozen=True)
class DatasetRow:
    """One request of the dataset: its prompt text and the reply length to ask for (tokens);
    ``reply`` is the reference reply's text when the dataset has one (to count it)."""

    prompt: str
    output_tokens: int | None = None
    reply: str | None = None


def _turns(item: dict) -> list | None:
    turns = item.get("conversations", item.get("messages"))
    return turns if isinstance(turns, list) else None


def _turn(t) -> tuple[str | None, str | None]:
    """(role, text) of a ShareGPT or OpenAI-style turn."""
    if not isinstance(t, dict):
        return None, None
    role = t.get("from", t.get("role"))
    text = t.get("value", t.get("content"))
    return (str(role).lower() if role is not None else None), (text if isinstance(text, str) else None)


def row_of(item, where: str) -> DatasetRow | None:
    """The request an entry gives; None for a conversation without a user turn and a reply."""
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected an object, got {type(item).__name__}")
    if "prompt" in item:
        prompt, out = item["prompt"], item.get("output_tokens")
        if not isinstance(prompt, str) or not prompt:
            raise UserError(f"{where}: 'prompt' must be a non-empty string")
        if isinstance(out, bool) or not isinstance(out, int) or out < 1:
            raise UserError(f"{where}: 'output_tokens' must be an integer >= 1, got {out!r}")
        return DatasetRow(prompt, out)
    turns = _turns(item)
    if turns is None:
        raise UserError(f"{where}: neither 'prompt' nor 'conversations'/'messages'")
    parsed = [_turn(t) for t in turns]
    for i, (role, text) in enumerate(parsed[:-1]):
        nxt_role, nxt_text = parsed[i + 1]
        if role in USER_ROLES and text and nxt_role in REPLY_ROLES and nxt_text:
            return DatasetRow(text, reply=nxt_text)
    return None


def read_dataset(path: str) -> list[DatasetRow]:
    """Every usable row of a dataset file; one-line errors name the file and the entry."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{FLAG} {path}: no such file")
    text = p.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            entries = [(f"{path}: entry {i}", e) for i, e in enumerate(json.loads(text))]
        else:
            entries = [(f"{path}:{n}", json.loads(line))
                       for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON or JSONL ({exc.msg} at line {exc.lineno})") from None
    rows = [r for where, e in entries if (r := row_of(e, where)) is not None]
    if not rows:
        raise UserError(f"{path}: no usable request (a user turn followed by a reply, or a "
                        "'prompt' with 'output_tokens')")
    return rows


@dataclass(frozen=True)
class DatasetParams:
    dataset_file: str | None = option(None, "ShareGPT-format JSON/JSONL conversations (first "
                                            "user turn and its reply's length) or JSONL of "
                                            "{prompt, output_tokens}", metavar="PATH")
    dataset_tokenizer: str | None = option(None, "local Hugging Face tokenizer folder to count "
                                                 "the dataset's tokens (none: ceil(chars / 4))",
                                           metavar="DIR")


@register("dataset")
class DatasetLengths(LengthGenerator):
    """Lengths of real prompts; ``prompts`` holds the text of each request drawn, in order."""

    params = DatasetParams
    params_prefix = "dataset_request_length_generator_"

    def __init__(self, path: str, rng: np.random.Generator, cap: int = 8192,
                 tokenizer: str | None = None) -> None:
        super().__init__(cap)
        from .tokenizer import load_tokenizer

        rows = read_dataset(path)
        tok = load_tokenizer(tokenizer)
        prompt = np.asarray(tok.count_many([r.prompt for r in rows]), dtype=np.int64)
        replies = [r.reply for r in rows if r.output_tokens is None]
        counted = iter(tok.count_many(replies) if replies else [])
        output = np.asarray([r.output_tokens if r.output_tokens is not None else next(counted)
                             for r in rows], dtype=np.int64)
        output = np.maximum(output, 1)
        keep = np.flatnonzero((prompt >= 1) & (prompt + output <= self.max_tokens))
        if keep.size == 0:
            raise UserError(f"{path}: every request is longer than {self.max_tokens} tokens "
                            "(--request-generator-max-tokens); prompts are never cut")
        self.path, self.skipped = path, len(rows) - keep.size
        self._rows = [rows[i] for i in keep]
        self._prefill, self._decode = prompt[keep], output[keep]
        self._order = rng.permutation(len(keep))
        self._next = 0
        self.prompts: list[str] = []

    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        picks = self._order[(self._next + np.arange(n)) % len(self._order)]
        self._next += n
        self.prompts += [self._rows[i].prompt for i in picks]
        return self._prefill[picks].copy(), self._decode[picks].copy()

    @classmethod
    def from_config(cls, params: DatasetParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> DatasetLengths:
        if not params.dataset_file:
            raise UserError(f"{FLAG} is required when --request-length-generator-provider is "
                            "dataset")
        return cls(params.dataset_file, rng, cfg.request_generator_max_tokens,
                   params.dataset_tokenizer)

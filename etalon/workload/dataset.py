"""Real prompts from a local dataset file: what people actually send, not corpus cut to length.

Two shapes are read, and told apart by their keys:

* ShareGPT conversations — a JSON list, or JSONL, of objects with ``conversations`` (or
  ``messages``): turns with ``from``/``value`` (or ``role``/``content``). A conversation's turns
  start at its first user message followed by a reply and go on while user messages and replies
  alternate (system messages before it are left out). By default (``conversations first``) a
  request is the first user turn; its output length is the length of the reply that follows it,
  as ``vllm bench`` samples ShareGPT. With ``conversations whole`` each conversation is a
  multi-turn session (``sessions.py``): turn ``k`` sends user message ``k``, its prompt is the
  conversation so far (``after_turn`` of the earlier messages and replies) plus that message, and
  its output length is recorded reply ``k``'s.
* Prompt rows — JSONL of ``{"prompt": str, "output_tokens": int}`` (a one-turn conversation).

Token counts use ``dataset_tokenizer`` (a local Hugging Face tokenizer folder) when given, else
etalon's ``ceil(characters / 4)``. Prompts are used whole: a row longer than
``--request-generator-max-tokens`` in total is left out rather than cut, and a conversation ends
before its first turn over the cap. Rows (conversations) are drawn in a random order fixed by the
workload's seed (its length stream), cycling when the run asks for more requests than the file
has. Nothing is downloaded: the file is the user's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from etalon.cli_errors import UserError
from etalon.options import option

from .lengths import MAX_TOKENS_FLAG, LengthGenerator, register
from .sessions import TurnPlan, after_turn

if TYPE_CHECKING:
    from .config import WorkloadConfig

log = logging.getLogger(__name__)

FLAG = "--dataset-request-length-generator-dataset-file"
CONVERSATIONS_FLAG = "--dataset-request-length-generator-conversations"
CONVERSATIONS = ("first", "whole")
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


def turns_of(item, where: str) -> list[DatasetRow]:
    """The turns an entry gives: a prompt row's one request, or a conversation's alternating
    user messages and replies from its first user message followed by a reply (empty if none)."""
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected an object, got {type(item).__name__}")
    if "prompt" in item:
        prompt, out = item["prompt"], item.get("output_tokens")
        if not isinstance(prompt, str) or not prompt:
            raise UserError(f"{where}: 'prompt' must be a non-empty string")
        if isinstance(out, bool) or not isinstance(out, int) or out < 1:
            raise UserError(f"{where}: 'output_tokens' must be an integer >= 1, got {out!r}")
        return [DatasetRow(prompt, out)]
    turns = _turns(item)
    if turns is None:
        raise UserError(f"{where}: neither 'prompt' nor 'conversations'/'messages'")
    parsed = [_turn(t) for t in turns]
    rows: list[DatasetRow] = []
    i = 0
    while i < len(parsed) - 1:
        (role, text), (nxt_role, nxt_text) = parsed[i], parsed[i + 1]
        if role in USER_ROLES and text and nxt_role in REPLY_ROLES and nxt_text:
            rows.append(DatasetRow(text, reply=nxt_text))
            i += 2
        elif rows:
            break  # the alternation broke: the conversation as a session ends here
        else:
            i += 1
    return rows


def row_of(item, where: str) -> DatasetRow | None:
    """The request an entry gives; None for a conversation without a user turn and a reply."""
    rows = turns_of(item, where)
    return rows[0] if rows else None


def read_conversations(path: str) -> list[list[DatasetRow]]:
    """Every usable entry of a dataset file as its turns (at least one each); one-line errors
    name the file and the entry."""
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
    conversations = [turns for where, e in entries if (turns := turns_of(e, where))]
    if not conversations:
        raise UserError(f"{path}: no usable request (a user turn followed by a reply, or a "
                        "'prompt' with 'output_tokens')")
    return conversations


def read_dataset(path: str) -> list[DatasetRow]:
    """Every usable row of a dataset file (a conversation's first turn)."""
    return [turns[0] for turns in read_conversations(path)]


@dataclass(frozen=True)
class DatasetParams:
    dataset_file: str | None = option(None, "ShareGPT-format JSON/JSONL conversations (first "
                                            "user turn and its reply's length) or JSONL of "
                                            "{prompt, output_tokens}", metavar="PATH")
    dataset_tokenizer: str | None = option(None, "local Hugging Face tokenizer folder to count "
                                                 "the dataset's tokens (none: ceil(chars / 4))",
                                           metavar="DIR")
    conversations: str = option("first", "first: each conversation's first user turn is one "
                                         "request; whole: each conversation is a multi-turn "
                                         "session of its user turns (not with --session-turns)",
                                choices=CONVERSATIONS)

    @property
    def own_sessions(self) -> bool:
        """The generator's requests are the turns of its own sessions (``session_plan``)."""
        return self.conversations == "whole"


@register("dataset")
class DatasetLengths(LengthGenerator):
    """Lengths of real prompts; ``prompts`` holds the text of each request drawn, in order.

    ``conversations="whole"``: ``session_plan`` gives the requests as the turns of whole
    conversations; conversations are counted only when drawn (a turn's prompt holds the whole
    conversation before it, so counting a big file up front would cost its square)."""

    params = DatasetParams
    params_prefix = "dataset_request_length_generator_"

    def __init__(self, path: str, rng: np.random.Generator, cap: int = 8192,
                 tokenizer: str | None = None, conversations: str = "first") -> None:
        super().__init__(cap)
        from .tokenizer import load_tokenizer

        if conversations not in CONVERSATIONS:
            raise UserError(f"{CONVERSATIONS_FLAG} must be one of {', '.join(CONVERSATIONS)}, "
                            f"got {conversations!r}")
        self.path, self.whole = path, conversations == "whole"
        self._tok = load_tokenizer(tokenizer)
        self.prompts: list[str] = []
        self._next = 0
        if self.whole:
            self._conversations = read_conversations(path)
            self._counted: dict[int, list[tuple[str, int, int, int]]] = {}
            self._order = rng.permutation(len(self._conversations))
            return
        rows = read_dataset(path)
        prompt = np.asarray(self._tok.count_many([r.prompt for r in rows]), dtype=np.int64)
        replies = [r.reply for r in rows if r.output_tokens is None]
        counted = iter(self._tok.count_many(replies) if replies else [])
        output = np.asarray([r.output_tokens if r.output_tokens is not None else next(counted)
                             for r in rows], dtype=np.int64)
        output = np.maximum(output, 1)
        keep = np.flatnonzero((prompt >= 1) & (prompt + output <= self.max_tokens))
        if keep.size == 0:
            raise UserError(f"{path}: every request is longer than {self.max_tokens} tokens "
                            "(--request-generator-max-tokens); prompts are never cut")
        self.skipped = len(rows) - keep.size
        self._rows = [rows[i] for i in keep]
        self._prefill, self._decode = prompt[keep], output[keep]
        self._order = rng.permutation(len(keep))

    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.whole:
            plan = self.session_plan(n)
            return plan.prompt_tokens.copy(), plan.output_tokens.copy()
        picks = self._order[(self._next + np.arange(n)) % len(self._order)]
        self._next += n
        self.prompts += [self._rows[i].prompt for i in picks]
        return self._prefill[picks].copy(), self._decode[picks].copy()

    def session_plan(self, n: int) -> TurnPlan | None:
        """``n`` requests: the turns of whole conversations drawn in the seeded order (the last
        one cut short at ``n``); None unless ``conversations`` is ``whole``."""
        if not self.whole:
            return None
        rows: list[tuple[int, int, str, int, int, int]] = []  # session, turn, text, counts
        session, misses, skipped, cut = 0, 0, 0, 0
        while len(rows) < n:
            index = int(self._order[self._next % len(self._order)])
            self._next += 1
            turns = self._count(index)
            if not turns:  # its first turn alone is over the cap
                misses, skipped = misses + 1, skipped + 1
                if misses >= len(self._order):
                    raise UserError(f"{self.path}: every conversation's first turn is longer "
                                    f"than {self.max_tokens} tokens (--request-generator-max-"
                                    "tokens); prompts are never cut")
                continue
            misses, cut = 0, cut + (len(turns) < len(self._conversations[index]))
            rows += [(session, k, *t) for k, t in enumerate(turns[:n - len(rows)])]
            session += 1
        self.prompts += [r[2] for r in rows]
        if skipped or cut:
            log.warning("%s: %d conversations drawn were left out and %d ended early: their "
                        "turns exceed %s %d (prompts are never cut)", self.path, skipped, cut,
                        MAX_TOKENS_FLAG, self.max_tokens)

        def column(j: int) -> np.ndarray:
            return np.asarray([r[j] for r in rows], dtype=np.int64)

        return TurnPlan(column(0), column(1), column(3), column(4), column(5),
                        [r[2] for r in rows])

    def _count(self, index: int) -> list[tuple[str, int, int, int]]:
        """Conversation ``index``'s turns within the cap, each ``(user message, context tokens,
        prompt tokens, output tokens)``: the prompt is the conversation so far with the recorded
        replies (``after_turn``) and the message, the context that text before the message."""
        if index in self._counted:
            return self._counted[index]
        rows = self._conversations[index]
        histories, history = [], ""
        for row in rows:
            histories.append(history)
            if row.reply is not None:
                history = after_turn(history + row.prompt, row.reply)
        prompts = [h + r.prompt for h, r in zip(histories, rows)]
        replies = [r.reply for r in rows if r.output_tokens is None]
        counts = iter(self._tok.count_many(prompts + histories[1:] + replies))
        prompt = [next(counts) for _ in prompts]
        context = [0] + [next(counts) for _ in histories[1:]]
        output = [max(r.output_tokens if r.output_tokens is not None else next(counts), 1)
                  for r in rows]
        turns = []
        for k, row in enumerate(rows):
            if prompt[k] < 1 or prompt[k] + output[k] > self.max_tokens:
                break  # a later turn is longer still: the session ends before this one
            turns.append((row.prompt, context[k], prompt[k], output[k]))
        self._counted[index] = turns
        return turns

    @classmethod
    def from_config(cls, params: DatasetParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> DatasetLengths:
        if not params.dataset_file:
            raise UserError(f"{FLAG} is required when --request-length-generator-provider is "
                            "dataset")
        return cls(params.dataset_file, rng, cfg.request_generator_max_tokens,
                   params.dataset_tokenizer, params.conversations)

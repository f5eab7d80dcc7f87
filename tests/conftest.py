"""Shared fixtures: one Ray cluster per session, programmed servers, a real tokenizer with a
chat template."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
from shipped_data import PUBLIC_TRACES  # noqa: E402  (shipped with the repository)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The CLI records calculations in a history under the user's home; tests never write there
# (tests of the history point ETALON_HISTORY at their own tmp_path).
os.environ["ETALON_HISTORY"] = "off"


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    assert PUBLIC_TRACES.is_dir(), f"{PUBLIC_TRACES} should ship with the repository"
    return PUBLIC_TRACES


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole test session (it costs ~4 s and ~0.5 GB)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def programmed_server():
    from programmed_server import ProgrammedServer

    srv = ProgrammedServer(ttft=0.05, itl=0.02).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def chat_tokenizer_dir(tmp_path_factory) -> Path:
    """A real Hugging Face tokenizer (BPE trained offline on the packaged corpus) with a
    ChatML-like chat template, as a folder for ``--tokenizer``."""
    pytest.importorskip("transformers")
    from hf_tokenizer import train_tokenizer, with_chat_template

    base = tmp_path_factory.mktemp("tokenizer")
    return with_chat_template(train_tokenizer(base / "trained"), base / "chat")


@pytest.fixture(scope="session")
def token_server(chat_tokenizer_dir):
    """A programmed server that counts and generates with the chat tokenizer (fast timing)."""
    import transformers
    from programmed_server import ProgrammedServer

    tok = transformers.AutoTokenizer.from_pretrained(str(chat_tokenizer_dir), local_files_only=True)
    srv = ProgrammedServer(ttft=0.02, itl=0.005, tokenizer=tok).start()
    yield srv
    srv.stop()


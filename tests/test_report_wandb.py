"""W&B logging in offline mode: the run is written, the API key is not, failures only warn."""

import pytest

from etalon.metrics.summary import summarize
from etalon.records import RequestRecord
from etalon.report.wandb_logger import flatten, log_to_wandb

SECRET = "sk-etalon-test-SECRET-0123456789"
MARKER = "etalon-visible-marker-model"


def records():
    return [RequestRecord(request_id=i, scheduled_at=float(i), sent_at=float(i),
                          completed_at=i + 1.0, chunk_times=[i + 0.5, i + 0.75],
                          chunk_tokens=[1, 1]) for i in range(3)]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def test_offline_run_is_written_without_the_api_key(offline, tmp_path):
    pytest.importorskip("wandb")
    recs = records()
    summary = summarize(recs, ttft_deadline=1.0, tbt_deadline=0.5)
    plot = tmp_path / "p.png"
    from etalon.report.plots import plot_cdf
    plot_cdf([1.0, 2.0], plot, xlabel="x", title="t")
    config = {"model": MARKER, "api_key": SECRET, "client": {"auth_token": SECRET}}
    assert log_to_wandb("etalon-test", "g", "r", config, summary, recs, {"plot/x": plot})
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))
    blobs = [p.read_bytes() for p in (tmp_path / "wandb").rglob("*") if p.is_file()]
    assert not any(SECRET.encode() in b for b in blobs)
    assert any(MARKER.encode() in b for b in blobs)  # the search would have found the key


def test_a_logging_failure_is_one_warning_line(offline, monkeypatch, capsys):
    wandb = pytest.importorskip("wandb")

    def broken_init(**kwargs):
        raise RuntimeError("network down")

    monkeypatch.setattr(wandb, "init", broken_init)
    assert log_to_wandb("p", None, None, {}, summarize([]), [], {}) is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "W&B logging failed" in err[0] and "network down" in err[0]


def test_flatten_joins_keys_and_drops_none():
    assert flatten({"a": {"b": 1, "c": None, "d": {"e": 0.5}}, "f": "x", "g": float("nan")}) == {
        "a/b": 1, "a/d/e": 0.5, "f": "x"}

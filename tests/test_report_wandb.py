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


def written(folders):
    """The bytes of every file under each folder, once W&B has written them: a run's
    ``finish()`` can return before its background service has flushed it (the last run's
    name was missing once), and ``teardown`` waits for that."""
    import wandb

    wandb.teardown()
    return [b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
            for folder in folders]


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
    from etalon.report.figures import cdf_spec
    from etalon.report.plots import draw
    draw(cdf_spec([1.0, 2.0], xlabel="x", title="t"), plot)
    config = {"model": MARKER, "api_key": SECRET, "client": {"auth_token": SECRET}}
    assert log_to_wandb("etalon-test", "g", "r", config, summary, recs, {"plot/x": plot})
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    blobs = written([tmp_path / "wandb"])
    assert list(runs[0].glob("*.wandb"))
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


def test_capacity_job_logs_one_run_per_probe_grouped_and_tags_the_best(offline, tmp_path):
    pytest.importorskip("wandb")
    from etalon.report.wandb_logger import log_capacity_job

    def conf(name, probes, capacity):
        return {"deployment": name.split("/")[0], "kind": "simulated", "workload": "w",
                "slo": "default", "key": "k-" + name, "capacity_qps": capacity,
                "search": {"probes": [{"qps": q, "passed": ok, "observed": {"margin": m, "reasons": []}}
                                      for q, ok, m in probes]}}

    report = {"best": "fast", "slos": {"default": {"ttft_max_s": 0.5}},
              "configurations": {"fast": conf("fast", [(1, True, -1.0), (2, True, -0.2), (4, False, 0.5)], 2),
                                 "slow": conf("slow", [(1, False, 0.3)], None)}}
    # W&B reads WANDB_DIR once per process (an earlier test set it): say where explicitly
    assert log_capacity_job("etalon-test", report, directory=tmp_path) == 4
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 4
    blobs = written(runs)
    # the group and the "best" tag are in the three runs of "fast", not in the one of "slow"
    assert sum(b"fast@" in b for b in blobs) == 3 and sum(b"slow@" in b for b in blobs) == 1
    assert all(b"best" in b for b in blobs if b"fast@" in b)
    assert not any(b"best" in b for b in blobs if b"slow@" in b)

"""A replay keeps what a prefix cache could share: prefix groups of shared-prefix requests, and a
session's turns as its own growing prefix; record tables from before those fields still load."""

from __future__ import annotations

import pyarrow.parquet as pq

from etalon.record_table import RecordTable, read_records
from etalon.records import RequestRecord
from etalon.workload.replay import requests_from_records


def _record(i: int, at: float, prompt: int, **kw) -> RequestRecord:
    return RequestRecord(request_id=i, scheduled_at=at, sent_at=at, completed_at=at + 1.0,
                         chunk_times=[at + 0.1, at + 0.2], chunk_tokens=[1, 1],
                         requested_prompt_tokens=prompt, requested_output_tokens=2,
                         num_prompt_tokens=prompt, num_output_tokens=2, **kw)


def test_groups_and_sessions_reach_the_replayed_requests(tmp_path):
    records = [
        _record(0, 10.0, 300, prefix_group=1, prefix_tokens=256),
        _record(1, 10.5, 280, prefix_group=1, prefix_tokens=256),
        _record(2, 11.0, 200),  # a prompt of its own
        # a session: the live prompt of turn 1 is what the server counted (the planned 150 grew
        # with the real answer), and the whole of it is the session's prefix
        _record(3, 12.0, 120, session_id=7, turn=0, prefix_group=7, prefix_tokens=120),
        _record(4, 14.0, 163, session_id=7, turn=1, prefix_group=7, prefix_tokens=150),
        # a group's prefix longer than the prompt the server counted is cut to the prompt
        _record(5, 15.0, 100, prefix_group=2, prefix_tokens=128),
    ]
    RecordTable.from_records(records).write(tmp_path)
    reqs = {r.request_id: r for r in requests_from_records(tmp_path)}
    assert reqs[0].arrival_time == 0.0 and reqs[1].arrival_time == 0.5
    assert (reqs[0].prefix_group, reqs[0].prefix_tokens) == (1, 256)
    assert (reqs[1].prefix_group, reqs[1].prefix_tokens) == (1, 256)
    assert (reqs[2].prefix_group, reqs[2].prefix_tokens) == (None, 0)
    assert (reqs[3].prefix_group, reqs[3].prefix_tokens, reqs[3].turn) == (7, 120, 0)
    assert (reqs[4].prefix_group, reqs[4].prefix_tokens, reqs[4].turn) == (7, 163, 1)
    assert reqs[4].session_id == 7
    assert (reqs[5].prefix_group, reqs[5].prefix_tokens) == (2, 100)


def test_a_table_written_before_prefix_fields_existed_still_loads(tmp_path):
    RecordTable.from_records([_record(0, 0.0, 50), _record(1, 1.0, 60)]).write(tmp_path)
    path = tmp_path / "requests.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["prefix_group", "prefix_tokens"]), path)
    loaded = read_records(tmp_path)
    assert [(r.request_id, r.prefix_group, r.prefix_tokens) for r in loaded] == [(0, None, 0), (1, None, 0)]
    assert [r.num_prompt_tokens for r in loaded] == [50, 60]

"""Trace reader: real traces load; malformed ones fail with one line naming file and column."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from etalon.workload import read_arrival_times, read_length_trace

from shipped_data import PUBLIC_TRACES
PROJECT_TRACES = Path(__file__).resolve().parents[1] / "traces"


def write(tmp_path: Path, text: str, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(call, *args) -> str:
    with pytest.raises(ValueError) as err:
        call(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "name, rows, has_arrivals",
    [
        ("sharegpt_8k_filtered_stats_llama2_tokenizer.csv", 30731, False),
        ("arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", 28257, False),
        ("bwb_stats_llama2_tokenizer_filtered_v2.csv", 33768, False),
        ("splitwise_conv.csv", 19366, True),
        ("splitwise_code.csv", 8819, True),
    ],
)
def test_public_traces_load(name, rows, has_arrivals):
    path = PUBLIC_TRACES / name
    trace = read_length_trace(path)
    assert len(trace) == rows
    assert trace.prefill.dtype == np.int64 and trace.prefill.min() >= 0
    if has_arrivals:
        times = read_arrival_times(path)
        assert len(times) == rows and times[0] == 0.0
    else:
        assert "arrival" in one_line_error(read_arrival_times, path)


def test_project_synthetic_trace_loads_with_comment_header():
    path = PROJECT_TRACES / "synthetic_small.csv"
    trace = read_length_trace(path)
    assert len(trace) == 200
    times = read_arrival_times(path)
    assert len(times) == 200 and np.all(np.diff(times) >= 0)


def test_extra_columns_and_arrival_time_preferred(tmp_path):
    path = write(
        tmp_path,
        "pd_ratio,arrival_time,arrived_at,num_prefill_tokens,num_decode_tokens,num_total_tokens\n"
        "1.5,0.5,9,3,2,5\n0.5, 1.0 ,9,1,2,3\n",
    )
    trace = read_length_trace(path)
    assert trace.prefill.tolist() == [3, 1] and trace.decode.tolist() == [2, 2]
    assert read_arrival_times(path).tolist() == [0.5, 1.0]


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.csv"
    message = one_line_error(read_length_trace, path)
    assert message == f"trace file '{path}' does not exist"


def test_missing_column_names_file_column_and_columns_found(tmp_path):
    path = write(tmp_path, "num_prefill_tokens,tokens_out\n1,2\n")
    message = one_line_error(read_length_trace, path)
    assert str(path) in message
    assert "'num_decode_tokens'" in message
    assert "columns found: num_prefill_tokens, tokens_out" in message


def test_missing_arrival_column(tmp_path):
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n1,2\n")
    message = one_line_error(read_arrival_times, path)
    assert str(path) in message and "'arrival_time' or 'arrived_at'" in message


def test_negative_value_names_column_and_first_bad_row(tmp_path):
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n1,2\n3,4\n5,-6\n7,-8\n")
    message = one_line_error(read_length_trace, path)
    assert message == f"trace file '{path}': column 'num_decode_tokens' data row 3 is negative (-6)"


def test_negative_arrival_time(tmp_path):
    path = write(tmp_path, "arrived_at\n0\n-1.5\n")
    message = one_line_error(read_arrival_times, path)
    assert (
        re.search(r"column 'arrived_at' data row 2 is negative", message) and str(path) in message
    )


def test_non_numeric_value_names_column_and_row(tmp_path):
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n1,2\nabc,4\n")
    message = one_line_error(read_length_trace, path)
    where = f"trace file '{path}': column 'num_prefill_tokens' data row 2"
    assert message == f"{where} is not a finite number ('abc')"


def test_empty_cell_and_fraction_and_infinity(tmp_path):
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n1,\n", "empty_cell.csv")
    assert "column 'num_decode_tokens' data row 1 is empty" in one_line_error(
        read_length_trace, path
    )
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n1.5,2\n", "frac.csv")
    assert "data row 1 is not a whole number (1.5)" in one_line_error(read_length_trace, path)
    path = write(tmp_path, "arrival_time\n0\ninf\n", "inf.csv")
    assert "data row 2 is not a finite number" in one_line_error(read_arrival_times, path)


def test_empty_file_and_header_only(tmp_path):
    path = write(tmp_path, "", "empty.csv")
    assert one_line_error(read_length_trace, path) == f"trace file '{path}' is empty"
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n", "header.csv")
    assert (
        one_line_error(read_length_trace, path)
        == f"trace file '{path}' has a header but no data rows"
    )


def test_directory_is_not_a_trace(tmp_path):
    assert "is not a file" in one_line_error(read_length_trace, tmp_path)


def test_edited_file_is_reread(tmp_path):
    path = write(tmp_path, "num_prefill_tokens,num_decode_tokens\n1,2\n")
    assert read_length_trace(path).prefill.tolist() == [1]
    path.write_text("num_prefill_tokens,num_decode_tokens\n10,20\n30,40\n")
    assert read_length_trace(path).prefill.tolist() == [10, 30]

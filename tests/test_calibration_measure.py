"""What the profilers say about where prompt lengths came from when the server sent no usage."""

from etalon.calibration.measure import prompt_count_note
from etalon.records import RequestRecord


def recs(source):
    return [RequestRecord(request_id=0, scheduled_at=0.0, prompt_tokens_source=source)]


def test_usage_needs_no_note():
    assert prompt_count_note(recs("usage"), chat=True) is None


def test_a_given_tokenizer_is_never_asked_for():
    assert prompt_count_note(recs("tokenizer"), chat=False).endswith("come from --tokenizer")
    chat = prompt_count_note(recs("chat_template"), chat=True)
    assert chat.endswith("--tokenizer and its chat template") and "pass --tokenizer" not in chat
    no_template = prompt_count_note(recs("tokenizer"), chat=True)
    assert "has no chat template" in no_template and "pass --tokenizer" not in no_template


def test_without_a_tokenizer_it_says_the_lengths_are_estimates():
    note = prompt_count_note(recs("requested"), chat=False)
    assert "requested lengths" in note and "pass --tokenizer for exact counts" in note


def test_an_empty_answer_is_named_as_such():
    from etalon.calibration.measure import why_failed

    empty = RequestRecord(request_id=0, scheduled_at=0.0, sent_at=0.0, completed_at=0.1,
                          finish_reason="stop")
    assert why_failed(empty) == "empty: the server answered with no token (finish_reason stop)"
    failed = RequestRecord(request_id=1, scheduled_at=0.0, error_type="http_500", error_message="boom")
    assert why_failed(failed) == "http_500: boom"

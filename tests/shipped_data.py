"""Where the data the repository ships lives, for tests (a user's clone has the same)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PUBLIC_TRACES = REPO / "data" / "processed_traces"

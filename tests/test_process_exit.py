"""``exit_process``: a command's process leaves without the interpreter's teardown, but only
after what a normal exit does (threads, exit handlers, buffered output)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_exit_process_finishes_what_an_exit_must_then_leaves_with_the_code(tmp_path):
    script = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from etalon.commands import exit_process

        out = Path({str(tmp_path)!r})

        def late_writer():  # a non-daemon thread still working when the command returns
            time.sleep(0.3)
            (out / "thread.txt").write_text("written")

        threading.Thread(target=late_writer).start()
        atexit.register(lambda: (out / "atexit.txt").write_text(
            (out / "thread.txt").read_text()))  # runs after the thread, as at a normal exit
        sys.stdout.write("buffered, no newline")  # a pipe: block-buffered until flushed
        exit_process(3)
        (out / "after.txt").write_text("exit_process returned")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "atexit.txt").read_text() == "written"
    assert not (tmp_path / "after.txt").exists()


def test_a_command_run_as_a_script_keeps_its_exit_code_and_output(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "etalon.estimate", "memory", "--model", "no-such",
                          "--hardware", "h100"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "no-such" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "etalon", "--version"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("etalon ")

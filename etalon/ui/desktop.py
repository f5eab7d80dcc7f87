"""``etalon ui --desktop``: the capacity planner in a native Tk window (standard library only).

The same ``etalon.ui.planner.compute`` as the web page draws the numbers; a bad input is a
message in the window's status line, never a traceback. ``PlannerWindow`` is separate from the
main loop so a test can fill the form, press Compute and read the labels under Xvfb.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from etalon.cli_errors import UserError
from etalon.estimator import catalog_names, hardware_names
from etalon.ui import planner
from etalon.ui.history import HistoryStore, history_path

if TYPE_CHECKING:
    import tkinter as tk

# form field -> (label, default); the numbers are parsed in ``inputs``
FIELDS = (("tp", "TP", "1"), ("pp", "PP", "1"), ("dp", "DP", "1"), ("ep", "EP", "1"),
          ("context_len", "Context length (0: model max)", "8192"),
          ("gpu_memory_utilization", "GPU memory utilization", "0.9"),
          ("concurrency", "Concurrent requests to hold", "1"))


class PlannerWindow:
    """The planner form and its results in ``root``. ``facts`` maps each fact's label (as in
    ``PlannerResult.facts``) to the Tk variable the window shows it in."""

    def __init__(self, root: tk.Misc) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.root = root
        frame = ttk.Frame(root, padding=10)
        frame.grid(sticky="nsew")
        self.model = tk.StringVar(value="llama-3.1-8b")
        self.hardware = tk.StringVar(value="h100-sxm")
        self.dtype = tk.StringVar(value="")
        self.kv_dtype = tk.StringVar(value="")
        row = 0
        for label, var, values in (("Model", self.model, catalog_names()),
                                   ("GPU", self.hardware, hardware_names()),
                                   ("Weights dtype (blank: checkpoint's)", self.dtype, planner.DTYPE_CHOICES),
                                   ("KV dtype (blank: activation's)", self.kv_dtype, planner.KV_DTYPE_CHOICES)):
            ttk.Label(frame, text=label).grid(row=row, column=0, sticky="w")
            ttk.Combobox(frame, textvariable=var, values=list(values), width=28).grid(row=row, column=1, sticky="w")
            row += 1
        self.fields: dict[str, tk.StringVar] = {}
        for key, label, default in FIELDS:
            ttk.Label(frame, text=label).grid(row=row, column=0, sticky="w")
            self.fields[key] = tk.StringVar(value=default)
            ttk.Entry(frame, textvariable=self.fields[key], width=30).grid(row=row, column=1, sticky="w")
            row += 1
        self.compute_button = ttk.Button(frame, text="Compute", command=self.compute)
        self.compute_button.grid(row=row, column=0, columnspan=2, pady=6)
        row += 1
        self.status = tk.StringVar(value="")
        ttk.Label(frame, textvariable=self.status, foreground="#b00020", wraplength=520).grid(
            row=row, column=0, columnspan=2, sticky="w")
        row += 1
        self.facts: dict[str, tk.StringVar] = {}
        self._facts_frame = ttk.LabelFrame(frame, text="Results", padding=6)
        self._facts_frame.grid(row=row, column=0, columnspan=2, sticky="nsew")
        self.memory = tk.StringVar(value="")
        ttk.Label(frame, textvariable=self.memory, justify="left").grid(row=row + 1, column=0, columnspan=2,
                                                                       sticky="w", pady=4)

    def inputs(self) -> planner.PlannerInputs:
        """The form as planner inputs; a non-number is a UserError naming the field."""
        values: dict = {}
        for key, label, _ in FIELDS:
            text = self.fields[key].get().strip()
            kind = float if key == "gpu_memory_utilization" else int
            try:
                values[key] = kind(text)
            except ValueError:
                raise UserError(f"{label}: expected {'a number' if kind is float else 'a whole number'}, "
                                f"got '{text}'") from None
        values["context_len"] = values["context_len"] or None
        return planner.PlannerInputs(model=self.model.get(), hardware=self.hardware.get(),
                                     dtype=self.dtype.get(), kv_dtype=self.kv_dtype.get(), **values)

    def compute(self) -> planner.PlannerResult | None:
        """Runs the planner on the form and shows the result, or the mistake in the status line."""
        from tkinter import ttk

        try:
            inputs = self.inputs()
            result = planner.compute(inputs)
        except UserError as exc:
            self.status.set(str(exc))
            return None
        self.status.set("; ".join([*result.notes, *_record(inputs, result)]))
        for child in self._facts_frame.winfo_children():
            child.destroy()
        self.facts.clear()
        import tkinter as tk

        for i, (label, value) in enumerate(result.facts()):
            self.facts[label] = tk.StringVar(value=value)
            ttk.Label(self._facts_frame, text=label).grid(row=i, column=0, sticky="w")
            ttk.Label(self._facts_frame, textvariable=self.facts[label]).grid(row=i, column=1, sticky="w", padx=8)
        self.memory.set("Per-device memory: " + ", ".join(f"{k} {v:.2f} GiB" for k, v in result.memory_rows()))
        return result


def _record(inputs: planner.PlannerInputs, result: planner.PlannerResult) -> list[str]:
    """Stores the calculation in the history (source "desktop"); a problem is a status note."""
    path = history_path()
    if path is None:
        return []
    try:
        HistoryStore(path).record("planner", inputs.history_inputs(), result.history_outputs(),
                                  source="desktop", label=f"{result.model.name} on {inputs.hardware}")
    except UserError as exc:
        return [f"not recorded in the history: {exc}"]
    return []


def run_desktop() -> int:
    """Opens the window and runs until it is closed."""
    try:
        import tkinter as tk
    except ImportError:
        raise UserError("the desktop planner needs tkinter (on Debian/Ubuntu: apt-get install "
                        "python3-tk; pyenv: build Python with tk-dev installed)") from None
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        raise UserError(f"cannot open a window ({exc}); is there a display (DISPLAY)?") from None
    root.title("etalon capacity planner")
    window = PlannerWindow(root)
    window.compute()
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(run_desktop())

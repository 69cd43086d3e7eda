"""The progress of a session while it runs: a bar in a notebook, a line
redrawn in place on a terminal, one line per change in a log."""

from __future__ import annotations

import html
import sys
from typing import Any, Dict, Optional, TextIO

WIDTH = 20


def line(s: Dict[str, Any]) -> str:
    """"[#####···············] round 3/10  loss 0.4321  running", as the CLI
    draws it."""
    rounds, done = int(s.get("rounds") or 0), int(s.get("round") or 0)
    step = s.get("progress") or {}
    if rounds == 0 and step.get("total"):
        # A session without rounds (record linkage): its step's progress.
        total, now = int(step["total"]), min(int(step.get("done") or 0), int(step["total"]))
        filled = now * WIDTH // total
        bar = "#" * filled + "·" * (WIDTH - filled)
        return f"[{bar}] {now}/{total} {step.get('unit', '')}  {s.get('status_reason') or s.get('status', '')}"
    filled = done * WIDTH // rounds if rounds > 0 else 0
    bar = "#" * filled + "·" * (WIDTH - filled)
    loss = (s.get("latest") or {}).get("loss")
    loss_text = f"  loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    return f"[{bar}] round {done}/{rounds}{loss_text}  {s.get('status_reason') or s.get('status', '')}"


def _in_notebook() -> bool:
    """Whether we run in a Jupyter kernel (where display() renders)."""
    ip = sys.modules.get("IPython")
    if ip is None:
        return False
    try:
        shell = ip.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class Progress:
    """Draws a session's progress on the best surface available."""

    def __init__(self, file: Optional[TextIO] = None) -> None:
        self._file = file or sys.stderr
        self._last = ""
        self._handle: Any = None
        self._notebook = file is None and _in_notebook()
        self._tty = not self._notebook and hasattr(self._file, "isatty") and self._file.isatty()

    def update(self, s: Dict[str, Any]) -> None:
        text = line(s)
        if self._notebook:
            self._draw_html(s, text)
        elif self._tty:
            self._file.write(f"\r{text:<110}")
            self._file.flush()
        elif text != self._last:
            self._file.write(text + "\n")
            self._file.flush()
        self._last = text

    def close(self) -> None:
        if self._tty and self._last:
            self._file.write("\n")
            self._file.flush()

    def _draw_html(self, s: Dict[str, Any], text: str) -> None:
        from IPython.display import display  # present: we are in a kernel

        rounds, done = int(s.get("rounds") or 0), int(s.get("round") or 0)
        label = html.escape(text.split("] ", 1)[-1])
        # HTML for the notebook, plain text for anything that reads the saved
        # notebook elsewhere.
        bundle = {
            "text/html": f'<div><progress value="{done}" max="{max(rounds, 1)}" style="width:16em;vertical-align:middle">'
            f"</progress> <code>{html.escape(str(s.get('id', '')))}</code> {label}</div>",
            "text/plain": text,
        }
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        elif text != self._last:
            self._handle.update(bundle, raw=True)

"""A scripted transcriber for tests where the model is not what is under test (STYLE 4.9).

It runs inside real spawned slot processes, on real decoded audio; its behaviour is chosen by
the recording's file name so that a test can script a batch:
- ``poison*``: the slot process kills itself with SIGKILL on every attempt;
- ``killonce*``: kills itself the first time (a marker file beside the input remembers);
- ``slow*``: takes ``SLOW_S`` seconds;
- anything else: takes ``FAST_S`` seconds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from jozvesaz_cli.transcript import Segment, Transcript

FAST_S = 0.3
SLOW_S = 3.0


class ScriptedTranscriber:
    """Implements the ``Transcriber`` protocol with scripted delays and deaths."""

    def transcribe(
        self, audio: Any, options: Any, progress: Any = None, *, source: str = ""
    ) -> Transcript:
        path = Path(source) if source else None
        name = path.name if path else ""
        delay = SLOW_S if name.startswith("slow") else FAST_S
        if name.startswith("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("killonce") and path is not None:
            marker = path.with_name(path.name + ".killed")
            if not marker.exists():
                marker.write_text("x", encoding="utf-8")
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGKILL)
        steps = 10
        for step in range(steps):
            time.sleep(delay / steps)
            if progress is not None:
                progress((step + 1) / steps)
        return Transcript(
            source_name=name,
            segments=(Segment(0.0, audio.duration_s, f"scripted text for {name}"),),
            language="en",
            language_probability=1.0,
            duration_s=audio.duration_s,
            model="scripted",
        )


def scripted_factory(settings: Any) -> ScriptedTranscriber:
    """Slot factory (module-level, so it pickles into spawned slots)."""
    return ScriptedTranscriber()

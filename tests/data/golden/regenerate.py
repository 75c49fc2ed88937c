"""Rewrite every golden file from the fixed cases in ``cases.py``.

Run from the repository root after an intended change to a writer, then read the diff:

    .venv/bin/python tests/data/golden/regenerate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, so make the repository root importable for ``tests.data.golden.cases``.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from jozvesaz_cli.writers import OutputFormat
from tests.data.golden.cases import CASES, golden_path, render_case


def main() -> int:
    """Write one file per case and format; report each path on stderr."""
    for case in CASES:
        for fmt in OutputFormat:
            path = golden_path(case, fmt)
            path.write_bytes(render_case(case, fmt))
            sys.stderr.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The HTML notes rendered by a real browser: screenshots, and the computed text direction.

Headless Chromium (Debian package ``chromium``, at ``/usr/bin/chromium``) opens the notes of a
Persian and an English lecture. Each page's screenshot is saved under ``tests/artifacts/`` for a
person to look at. A second copy of each page, with a small script appended, writes the
browser's computed ``direction`` of the body and of every paragraph, and where each paragraph's
timestamp sits, into the DOM, which ``--dump-dom`` prints: so the test checks what the browser
did, not what the HTML says. A Persian paragraph must be laid out right to left with its
timestamp at the right edge; an English one left to right with it at the left edge.

Without Chromium the test skips with the reason, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jozvesaz_cli.writers import OutputFormat, prepare_transcript, render
from tests.data.golden.cases import GOLDEN_OPTIONS, english_lecture, persian_lecture

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_TIMEOUT_S = 90

_PROBE = """
<script>
(() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right};
  };
  const result = {
    htmlDir: document.documentElement.dir,
    body: getComputedStyle(document.body).direction,
    paragraphs: [...document.querySelectorAll("main p")].map((p) => ({
      direction: getComputedStyle(p).direction,
      box: box(p),
      ts: p.querySelector("a.ts") ? box(p.querySelector("a.ts")) : null,
    })),
    headings: [...document.querySelectorAll("h1, h2")].map((h) => getComputedStyle(h).direction),
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
})();
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> Path:
    if CHROMIUM.is_file() or shutil.which("chromium"):
        return CHROMIUM if CHROMIUM.is_file() else Path(str(shutil.which("chromium")))
    reason = "headless Chromium not installed (Debian: apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _run_chromium(chromium: Path, profile: Path, *args: str) -> str:
    command = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        "--window-size=1000,1300",
        *args,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def _probe(chromium: Path, page: Path, profile: Path) -> dict[str, Any]:
    probe_page = page.with_name(page.stem + ".probe.html")
    probe_page.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
    )
    dom = _run_chromium(chromium, profile, "--dump-dom", probe_page.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert match, f"no probe output in the dumped DOM: {dom[-1000:]}"
    result: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return result


@pytest.mark.parametrize(
    ("name", "build", "direction"),
    [("fa_lecture", persian_lecture, "rtl"), ("en_lecture", english_lecture, "ltr")],
)
def test_html_notes_render_with_the_right_direction(
    name: str, build: Any, direction: str, chromium: Path, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    transcript = prepare_transcript(build(), GOLDEN_OPTIONS)
    page = ARTIFACTS / f"notes_{name}.html"
    page.write_text(render(OutputFormat.HTML, transcript, GOLDEN_OPTIONS), encoding="utf-8")
    screenshot = ARTIFACTS / f"notes_{name}.png"
    screenshot.unlink(missing_ok=True)

    _run_chromium(chromium, tmp_path / "profile", f"--screenshot={screenshot}", page.as_uri())
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one

    result = _probe(chromium, page, tmp_path / "profile")
    assert result["htmlDir"] == direction
    assert result["body"] == direction
    assert set(result["headings"]) == {direction}
    paragraphs = result["paragraphs"]
    assert len(paragraphs) >= 3
    for paragraph in paragraphs:
        assert paragraph["direction"] == direction
        box, ts = paragraph["box"], paragraph["ts"]
        # The timestamp leads the paragraph: at its right edge in RTL, its left edge in LTR.
        if direction == "rtl":
            assert abs(box["right"] - ts["right"]) < 2, paragraph
        else:
            assert abs(box["left"] - ts["left"]) < 2, paragraph

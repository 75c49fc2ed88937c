"""The benchmark runs end to end on a tiny workload and writes a complete report.

Timings are never asserted (issue 6: they belong to the benchmark, not the tests); this checks
that ``bench/run.py --quick`` builds its workload, runs every tool, and writes the JSON, the
Markdown table and the chart with the keys ``bench/README.md`` documents. One round, quick
workload: about two minutes on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, read_manifest

pytestmark = [pytest.mark.model, pytest.mark.slow]

EXIT_ENVIRONMENT = 3
TOOLS = ("jozvesaz", "direct-threads", "direct-procs", "direct-batched", "wct2")
SUMMARY_KEYS = {
    "audio_s",
    "wall_s",
    "x_real_time",
    "ratio_vs_direct",
    "ratio_vs_wct2",
    "peak_rss_process_mb",
    "peak_rss_total_mb",
    "model_loads",
    "first_file_s",
    "accuracy",
    "errors",
}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the quick benchmark once for every test here; return its results folder and output."""
    read_manifest()  # skips (or fails in CI) without the shared corpus
    root = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        str(REPO / "bench" / "run.py"),
        "--quick",
        "--rounds",
        "1",
        "--help-runs",
        "2",
        "--tools",
        "direct,wct2,jozvesaz",
        "--out",
        str(root / "results"),
        "--workload-dir",
        str(root / "workload"),
        "--machine",
        "pytest",
        "--timeout-s",
        "240",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=540, check=False)
    if done.returncode == EXIT_ENVIRONMENT:
        pytest.skip(f"benchmark cannot run here: {done.stderr.strip()}")
    # 1 = the report was written but a tool failed; which tool is checked below.
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return root / "results", done.stdout


@pytest.mark.timeout(600)
def test_bench_quick_writes_json_markdown_and_chart(quick_report: tuple[Path, str]) -> None:
    results, stdout = quick_report
    stems = {path.stem for path in results.iterdir()}
    assert len(stems) == 1, stems
    stem = stems.pop()
    assert stem.endswith("-pytest")
    assert {p.suffix for p in results.iterdir()} == {".json", ".md", ".png"}
    assert (results / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (results / f"{stem}.md").read_text(encoding="utf-8")
    assert "| tool | set | audio s | wall s | x real time | ratio vs direct |" in markdown
    assert f"![throughput per tool]({stem}.png)" in markdown
    assert "| tool | set |" in stdout


@pytest.mark.timeout(600)
def test_bench_quick_report_has_every_tool_and_set(quick_report: tuple[Path, str]) -> None:
    results, _ = quick_report
    report = json.loads(next(results.glob("*.json")).read_text(encoding="utf-8"))
    assert {"date", "machine", "host", "options", "workload", "help_s", "summary", "runs"} <= set(
        report
    )
    assert set(report["summary"]) == {"batch", "long"}
    assert report["workload"]["batch"]["files"] == 4
    assert report["workload"]["long"]["files"] == 1
    for set_name, set_summary in report["summary"].items():
        assert set(set_summary["tools"]) == set(TOOLS), set_name
        assert set_summary["direct"] in {"direct-threads", "direct-procs", "direct-batched"}
        for tool, row in set_summary["tools"].items():
            assert SUMMARY_KEYS <= set(row), (set_name, tool)
            # Every tool has numbers or says why not; jozvesaz may still be under construction.
            assert row["x_real_time"] is not None or row["errors"], (set_name, tool)
        for tool in ("direct-threads", "direct-procs", "direct-batched", "wct2"):
            row = set_summary["tools"][tool]
            assert not row["errors"], (set_name, tool, row["errors"])
            assert row["model_loads"] >= 1
            assert "en" in row["accuracy"]
    assert {run["tool"] for run in report["runs"]} == set(TOOLS)
    assert set(report["help_s"]) == {"jozvesaz", "whisper-ctranslate2"}

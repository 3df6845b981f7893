"""The rendered report in a real headless browser (Debian's chromium) at phone width: the page
renders, every image decodes, the console has no errors, the first column of the ablation
table sticks, the page itself does not scroll sideways, and a screenshot shows the table.

Skips with the reason when no chromium is installed (`.ci/run` installs Debian's package).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ablate.report.html import render
from ablate.study import launch
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser: install Debian's chromium package to run this"
)
WIDTH, HEIGHT = 390, 844  # a phone's CSS viewport
# Appended to a copy of the page: the facts the test checks, written where --dump-dom shows them
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const table = document.getElementById("ablation");
  const first = table.querySelector("td");
  const facts = {
    images: imgs.length,
    broken: imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).length,
    tableTop: table.getBoundingClientRect().top,
    sticky: getComputedStyle(first).position,
    pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
  };
  parent.postMessage(JSON.stringify(facts), "*");
});
</script>"""
# Headless chromium keeps windows at least 500 px wide: the page runs in a phone-sized frame.
FRAME = f"""<!DOCTYPE html><html><body style="margin:0">
<iframe src="{{src}}" style="border:0;width:{WIDTH}px;height:{HEIGHT}px"></iframe>
<script>addEventListener("message", (e) => document.body.setAttribute("data-probe", e.data));
</script></body></html>"""


def _chromium(*args: str, timeout: int = 90) -> subprocess.CompletedProcess:
    cmd = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size=600,{HEIGHT}",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    sweep = load_sweep(write_sweep(root, name="phone", steps=10, seeds=(0, 1)))
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert launch.run_sweep(sweep, stream=open(os.devnull, "w")) == 0  # noqa: SIM115
        return (root / render(sweep.run_dir, sweep.report_dir)).resolve()
    finally:
        os.chdir(cwd)


def _framed(page: Path, directory: Path) -> Path:
    frame = directory / f"frame-{page.stem}.html"
    frame.write_text(FRAME.replace("{src}", page.as_uri()))
    return frame


def _console_errors(stderr: str) -> list[str]:
    """Console messages at error level and failed loads in chromium's stderr log."""
    lines = stderr.splitlines()
    return [
        line
        for line in lines
        if ("CONSOLE" in line and ("ERROR" in line or "Uncaught" in line))
        or "Failed to load resource" in line
        or "net::ERR_" in line
    ]


def test_report_renders_on_a_phone_with_every_image_and_no_console_error(report_html, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report_html.read_text().replace("</body>", PROBE + "</body>"))
    out = _chromium("--dump-dom", _framed(probed, tmp_path).as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    match = re.search(r'data-probe="([^"]*)"', out.stdout)
    assert match, "the page did not finish loading: " + out.stderr[-2000:]
    facts = json.loads(match.group(1).replace("&quot;", '"'))
    assert facts["viewport"] == WIDTH
    assert facts["images"] >= 2 and facts["broken"] == 0, facts
    assert facts["sticky"] == "sticky"  # the arm column stays while the table scrolls
    assert facts["pageWidth"] <= WIDTH, "the page scrolls sideways at phone width"
    assert facts["tableTop"] < HEIGHT, "the table is not on the first screen"
    # the report as shipped (no probe): no console error, no failed load
    plain = _chromium("--dump-dom", report_html.as_uri())
    assert _console_errors(plain.stderr) == [], _console_errors(plain.stderr)


def test_phone_screenshot_shows_the_table(report_html, tmp_path):
    shot = tmp_path / "phone.png"
    out = _chromium(f"--screenshot={shot}", _framed(report_html, tmp_path).as_uri())
    assert shot.exists(), out.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("RGB").crop((0, 0, WIDTH, HEIGHT))  # the phone's frame
    # not a blank page: the table's borders and text give many distinct grey levels
    colours = img.getcolors(maxcolors=WIDTH * HEIGHT)
    assert len(colours) > 20
    # the baseline row's light-blue background (#f6fbff) is on the first screen
    assert (246, 251, 255) in {c for _, c in colours}

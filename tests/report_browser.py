"""Open a Snakemake HTML report in headless Chromium and click through it as a reader would.

The report is a React page whose results exist only once its scripts have run. A copy of the report gets one
extra script at its end that, once the page has loaded, clicks each category of the menu, each subcategory,
each result's view button (an image must then load and have a size) and its information button (whose panel
shows the caption), and writes what it saw as JSON into the page. ``chromium --headless --dump-dom`` prints the
page after that, and :func:`browse_report` returns the JSON.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Chromium from Debian's packages is `chromium`; other distributions name it differently.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_WALK = r"""
<script>
window.addEventListener("load", async function () {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const links = () => Array.from(document.querySelectorAll("a"));
  const linkLabelled = (label) => links().find((a) => a.textContent.trim() === label);
  const seen = {categories: {}, errors: []};
  try {
    await sleep(200);
    const menu = links().map((a) => a.textContent.trim());
    seen.menu = menu;
    for (const category of Object.keys(categories).sort()) {
      app.setView({navbarMode: "menu"});
      await sleep(50);
      const link = linkLabelled(category);
      if (!link) { seen.errors.push("no menu entry " + category); continue; }
      link.click();
      await sleep(50);
      const subcategories = {};
      for (const subcategory of Object.keys(categories[category]).sort()) {
        if (Object.keys(categories[category]).length > 1) {
          app.setView({navbarMode: "category", category: category});
          await sleep(50);
          const sub = linkLabelled(subcategory);
          if (!sub) { seen.errors.push("no entry " + category + "/" + subcategory); continue; }
          sub.click();
          await sleep(50);
        }
        const files = [];
        const rows = Array.from(document.querySelectorAll("tbody tr")).length;
        for (let i = 0; i < rows; i++) {
          app.setView({navbarMode: "subcategory", category: category, subcategory: subcategory});
          await sleep(50);
          const row = document.querySelectorAll("tbody tr")[i];
          const name = row.querySelector("td").textContent.trim();
          const buttons = row.querySelectorAll("td:last-child a");
          const file = {name: name};
          if (name.endsWith(".png")) {
            buttons[0].click();
            await sleep(50);
            const img = document.querySelector("img[src^='data:image/png']");
            // wait for the image to load (img.decode() never resolves under virtual time)
            for (let tries = 0; img && !(img.complete && img.naturalWidth > 0) && tries < 100; tries++) {
              await sleep(20);
            }
            if (img) {
              file.width = img.naturalWidth;
              file.height = img.naturalHeight;
            }
          }
          buttons[buttons.length - 1].click();
          await sleep(50);
          file.info = document.body.innerText;
          files.push(file);
        }
        subcategories[subcategory] = files;
      }
      seen.categories[category] = subcategories;
    }
  } catch (err) {
    seen.errors.push(String(err && err.stack || err));
  }
  const out = document.createElement("pre");
  out.id = "astrorim-walk";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    """The Chromium executable; skips the test when there is none, fails when ASTRORIM_REQUIRE_CHROMIUM=1 (CI)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    message = f"no headless browser found (tried {', '.join(CHROMIUM_NAMES)}; Debian: apt-get install chromium)"
    if os.environ.get("ASTRORIM_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message)
    pytest.skip(message)


def browse_report(report: Path, work: Path, timeout: float = 120.0) -> dict:
    """What a reader sees when clicking through ``report`` (see the module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    page = work / "report_walk.html"
    text = report.read_text(encoding="utf-8")
    assert "</body>" in text, f"{report}: not an HTML page"
    head, tail = text.rsplit("</body>", 1)
    page.write_text(head + _WALK + "</body>" + tail, encoding="utf-8")
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={work / 'chromium-profile'}", "--virtual-time-budget=600000",
               "--dump-dom", page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    match = re.search(r'<pre id="astrorim-walk">(.*?)</pre>', result.stdout, flags=re.S)
    assert match, f"the report's page never finished rendering; chromium said:\n{result.stderr[-3000:]}"
    return json.loads(html.unescape(match.group(1)))


def files_seen(walk: dict) -> dict[str, dict]:
    """{file name: what was seen of it} over all categories, with 'category' and 'subcategory' added."""
    seen = {}
    for category, subcategories in walk["categories"].items():
        for subcategory, files in subcategories.items():
            for file in files:
                seen.setdefault(file["name"], []).append({**file, "category": category, "subcategory": subcategory})
    return seen


def build_report(repo_root, out, configfile, *targets, timeout=300):
    """`snakemake <targets> --report <out> --configfile <configfile>`: (the finished process, seconds taken)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo_root / "Snakefile"), *targets,
               "--report", str(out), "--configfile", str(configfile)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result, time.monotonic() - started


def check_browsed(walk, pngs, categories):
    """Every PNG in `pngs` (paths as the workflow names them) shown in the browser as a loaded image, every
    result with its caption, the categories those of the menu, and nothing went wrong while clicking."""
    assert walk["errors"] == [], walk["errors"]
    assert set(categories) <= set(walk["menu"]), walk["menu"]
    assert set(walk["categories"]) == set(categories)
    seen = files_seen(walk)
    missing = sorted(str(p) for p in pngs if str(p) not in seen)
    assert not missing, f"figures not in the report: {missing}"
    for path in pngs:
        for view in seen[str(path)]:
            assert view.get("width", 0) > 100 and view.get("height", 0) > 100, (path, view)
    for name, views in seen.items():
        for view in views:
            assert "DESCRIPTION" in view["info"].upper(), f"{name}: no caption shown"
    return seen

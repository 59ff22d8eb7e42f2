"""Take the README's picture of the console dashboard from a real ``fraudstream demo`` run.

Starts the demo (embedded broker and Redis, worker, Prometheus; the sample and models in a scratch directory
unless --data / --models are given), waits until it prints the dashboard URL, lets the replay run for
--replay-seconds, then opens the dashboard in Debian's headless chromium through Playwright and saves a
full-page screenshot.  Ctrl-C-equivalent (SIGINT) stops the demo afterwards.

    python scripts/dashboard_screenshot.py --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Width (px) of the page in the picture; the height is the whole page.
VIEWPORT = {"width": 1500, "height": 1000}
DASHBOARD_LINE = re.compile(r"\[demo\] dashboard: (\S+)")
#: Longest wait (s) for the demo to simulate, train and start everything.
START_TIMEOUT_S = 1800.0
#: --quick-train: smaller models, trained in a fraction of the time (read by `fraudstream train`).
QUICK_TRAINING_ENV = {
    "FRAUDSTREAM_TRAIN_ANOMALY_METHODS": "HBOS", "FRAUDSTREAM_TRAIN_ANOMALY_MAX_ROWS": "5000",
    "FRAUDSTREAM_TRAIN_LIGHT_TREES": "100", "FRAUDSTREAM_TRAIN_HEAVY_TREES": "100",
    "FRAUDSTREAM_TRAIN_STACKING_FOLDS": "2", "FRAUDSTREAM_TRAIN_IMBALANCE": "none",
}
#: Longest wait (s) for the demo to stop after SIGINT.
STOP_TIMEOUT_S = 90.0
#: Time (ms) the page gets to draw its graphs after the network is idle.
RENDER_WAIT_MS = 3000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"), help="PNG to write")
    parser.add_argument("--replay-seconds", type=float, default=90.0,
                        help="how long the paced replay runs before the picture (s)")
    parser.add_argument("--data", type=Path, default=None, help="transaction file (default: simulated)")
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: trained)")
    parser.add_argument("--quick-train", action="store_true",
                        help="train smaller models (HBOS, 100 trees) so a busy machine gets there sooner")
    parser.add_argument("--rate", type=float, default=400.0,
                        help="replay pace (tx/s); slower than the demo's default so the replay outlasts the wait")
    return parser.parse_args(argv)


def start_demo(args: argparse.Namespace, work: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "fraudstream.cli.main", "demo", "--data", str(args.data or work / "sample.csv.gz"),
            "--models", str(args.models or work / "models"), "--rate", str(args.rate), "--log-dir",
            str(work / "logs")]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(QUICK_TRAINING_ENV if args.quick_train else {}))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def watch(demo: subprocess.Popen, found: dict[str, str], ready: threading.Event) -> None:
    """Echo the demo's output; note the dashboard URL and when the paced replay starts."""
    assert demo.stdout is not None
    for line in demo.stdout:
        sys.stderr.write(line)
        match = DASHBOARD_LINE.search(line)
        if match:
            found["url"], found["url_at"] = match.group(1), str(time.monotonic())
        if "[paced " in line and "paced_at" not in found:
            found["paced_at"] = str(time.monotonic())
            ready.set()
    ready.set()


def capture(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, wait_until="networkidle")
            page.wait_for_timeout(RENDER_WAIT_MS)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fraudstream-screenshot-") as scratch:
        demo = start_demo(args, Path(scratch))
        found: dict[str, str] = {}
        ready = threading.Event()
        threading.Thread(target=watch, args=(demo, found, ready), daemon=True).start()
        try:
            if not ready.wait(START_TIMEOUT_S) or "url" not in found or "paced_at" not in found:
                print(f"the demo did not reach its paced replay (exit code {demo.poll()})", file=sys.stderr)
                return 1
            paced_at = float(found["paced_at"])
            time.sleep(max(0.0, paced_at + args.replay_seconds - time.monotonic()))
            if demo.poll() is not None:
                print(f"the demo ended early with exit code {demo.returncode}", file=sys.stderr)
                return 1
            span_s = int(time.monotonic() - float(found["url_at"])) + 10
            capture(f"{found['url']}?range={span_s}", args.out)
            print(f"wrote {args.out}", file=sys.stderr)
            return 0
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGINT)
                try:
                    demo.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(demo.pid, signal.SIGKILL)
                    demo.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

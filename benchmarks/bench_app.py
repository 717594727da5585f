"""The Voila app under load, measured in Debian's headless chromium with a fake microphone.

    .venv/bin/python benchmarks/bench_app.py [--users 4] [--loads 3] [--stream-s 20]

Serves notebooks/app.ipynb with voila.json's settings, as ``make app`` does, and measures:

* page load to interactive: from navigation to the live tab's start button being enabled (the kernel
  has run the notebook and loaded the default model), for ``--loads`` fresh pages one after another;
  then the same with a preheated kernel (``--preheat_kernel=True --pool_size=1``; the pool refills
  between loads);
* kernel RSS: each page's kernel after loading, and after streaming;
* browser-to-kernel chunk latency: the median delay of each page's last 50 chunks (browser and
  kernel share this machine's clock);
* ``--users`` pages streaming at once from the fake microphone (three kathleen_dev utterances with
  pauses, looped by chromium) for ``--stream-s`` seconds: whether each keeps up (RTF, largest
  backlog, dropped audio, latency from arrival to processed), read from each page's status line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # background pages would otherwise be throttled: each simulated user has a page of their own
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
READY = ".asrkit-mic-button:not([disabled])"
STATUS = ".asrkit-live-status .asrkit-status"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def voila(*extra: str):
    """The app served on a free port; yields (url with token, server process)."""
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [
            Path(sys.executable).parent / "voila",
            "notebooks/app.ipynb",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--no-browser",
            f"--token={token}",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/?token={token}", psutil.Process(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def kernels(server: psutil.Process) -> dict[int, float]:
    """RSS in MB of each kernel process the server started, by pid."""
    return {
        p.pid: p.memory_info().rss / 2**20
        for p in server.children(recursive=True)
        if "ipykernel_launcher" in " ".join(p.cmdline())
    }


def microphone_file(path: Path) -> Path:
    from asrkit.audio import SAMPLE_RATE, load_audio
    from asrkit.manifest import read_manifest

    pause = np.zeros(round(1.5 * SAMPLE_RATE), np.float32)
    parts = [pause]
    for u in read_manifest(SHARED / "splits/kathleen_dev.tsv")[:3]:
        parts += [load_audio(u.audio_path), pause]
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return path


def load_times(
    browser, url: str, server: psutil.Process, loads: int, *, wait_between_s: float
) -> tuple[list[float], list[float]]:
    """Seconds to interactive of ``loads`` fresh pages, and each new kernel's RSS (MB) once loaded."""
    times, rss = [], []
    for _ in range(loads):
        before = set(kernels(server))
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(url, timeout=300_000)
        page.wait_for_selector(READY, timeout=300_000)
        times.append(time.perf_counter() - start)
        rss += [mb for pid, mb in kernels(server).items() if pid not in before]
        page.close()
        time.sleep(wait_between_s)
    return times, rss


def figures(page) -> dict[str, float]:
    status = page.locator(STATUS).first
    return {
        k: float(status.get_attribute(f"data-{k}"))
        for k in ("audio-s", "rtf", "latency-s", "max-backlog-s", "dropped-s", "transport-ms")
    }


def stream_together(browser, url: str, server: psutil.Process, users: int, stream_s: float) -> list[dict[str, float]]:
    """``users`` pages stream the fake microphone at once; each page's figures and its kernel's RSS."""
    pages = []
    for _ in range(users):
        before = set(kernels(server))
        page = browser.new_page()
        page.goto(url, timeout=300_000)
        page.wait_for_selector(READY, timeout=300_000)
        pages.append((page, [pid for pid in kernels(server) if pid not in before]))
    for page, _ in pages:
        page.locator(".asrkit-mic-button").first.click()
    time.sleep(stream_s)
    rows = []
    for page, pids in pages:
        row = figures(page)
        rss = kernels(server)
        row["rss-mb"] = max((rss[p] for p in pids if p in rss), default=float("nan"))
        rows.append(row)
    for page, _ in pages:
        page.locator(".asrkit-mic-button").first.click()
    for page, _ in pages:
        page.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--stream-s", type=float, default=20.0)
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache/numba"))
    os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache/matplotlib"))
    from playwright.sync_api import sync_playwright

    wav = microphone_file(Path(os.environ.get("TMPDIR", "/tmp")) / "asrkit-bench-microphone.wav")
    flags = [*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=flags)
        with voila() as (url, server):
            cold, cold_rss = load_times(browser, url, server, args.loads, wait_between_s=1.0)
            one = stream_together(browser, url, server, 1, args.stream_s)
            many = stream_together(browser, url, server, args.users, args.stream_s)
        with voila("--preheat_kernel=True", "--pool_size=1") as (url, server):
            time.sleep(45)  # let the pool's kernel run the notebook before the first visitor
            warm, _ = load_times(browser, url, server, args.loads, wait_between_s=45.0)
        browser.close()

    print(
        f"machine: {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other jobs share it); "
        f"fake microphone: {wav.name}, 200 ms chunks"
    )
    print(f"page load to interactive, cold kernel  (s): {', '.join(f'{t:.1f}' for t in cold)}")
    print(f"page load to interactive, preheated    (s): {', '.join(f'{t:.1f}' for t in warm)}")
    print(f"kernel RSS after loading (MB): {', '.join(f'{r:.0f}' for r in cold_rss)}")
    print(
        f"{'streaming':<22}{'user':>5}{'audio s':>9}{'RTF':>7}{'latency s':>11}{'max backlog s':>15}"
        f"{'dropped s':>11}{'page→kernel ms':>16}{'RSS MB':>8}"
    )
    for label, rows in (("1 user alone", one), (f"{args.users} users at once", many)):
        for i, r in enumerate(rows, 1):
            print(
                f"{label:<22}{i:>5}{r['audio-s']:>9.1f}{r['rtf']:>7.2f}{r['latency-s']:>11.2f}"
                f"{r['max-backlog-s']:>15.2f}{r['dropped-s']:>11.1f}{r['transport-ms']:>16.1f}{r['rss-mb']:>8.0f}"
            )
    kept_up = all(r["dropped-s"] == 0 and r["audio-s"] >= args.stream_s - 3 for r in many)
    print(
        f"{args.users} users kept up (no audio dropped, all heard): {'yes' if kept_up else 'NO'}; "
        f"median page→kernel chunk latency {statistics.median(r['transport-ms'] for r in many):.1f} ms"
    )


if __name__ == "__main__":
    main()

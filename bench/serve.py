"""``openbms serve`` under watchers: websocket latency (p50, p99) and the server's CPU with 1, 10
and 50 pages open, each row compared with the one-watcher row of the same run.

The server runs as a user runs it (``openbms serve`` in a child process, the built-in twin);
watchers are websocket clients in this process (the ``websockets`` package). Latency is from the
moment the server took a reading (``at_unix`` in each message) to the moment a watcher has it
decoded; both clocks are this machine's. CPU is the child's user + system time over the window
(``/proc/PID/stat``), as a share of one core::

    python bench/serve.py                 # 1, 10, 50 watchers, 10 s each
    python bench/serve.py --watchers 1,5 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


async def watch(url: str, seconds: float, latencies: list[float], counts: list[int]) -> None:
    import websockets

    received = 0
    async with websockets.connect(url, max_size=None) as ws:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(end - time.monotonic(), 0.01))
            except TimeoutError:
                break
            doc = json.loads(message)
            latencies.append(time.time() - float(doc["at_unix"]))
            received += 1
    counts.append(received)


async def run_row(url: str, watchers: int, seconds: float) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    counts: list[int] = []
    await asyncio.gather(*(watch(url, seconds, latencies, counts) for _ in range(watchers)))
    return latencies, counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="1,10,50", help="comma-separated watcher counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per row")
    args = parser.parse_args()
    counts = [int(x) for x in args.watchers.split(",") if x.strip()]
    if not counts or min(counts) < 1 or args.seconds <= 0:
        parser.error("--watchers needs positive counts and --seconds a positive time")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "openbms.cli", "serve", "--port", str(port)]
        command += ["--token-file", str(Path(folder) / "token")]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            else:
                print("openbms serve did not start", file=sys.stderr)
                return 1
            time.sleep(1.0)
            idle0, t0 = cpu_s(child.pid), time.monotonic()
            time.sleep(args.seconds)
            idle_cpu = (cpu_s(child.pid) - idle0) / (time.monotonic() - t0)
            load1 = os.getloadavg()[0]
            print(f"openbms serve (built-in twin, readings at 10 Hz); {os.cpu_count()} CPUs, load {load1:.2f} at start")
            print(f"server CPU with no watcher: {100 * idle_cpu:.1f} % of one core")
            heads = ("watchers", "msgs/s/watcher", "p50 ms", "p99 ms", "CPU %", "p99 vs 1", "CPU vs 1")
            print("  ".join(f"{h:>{w}}" for h, w in zip(heads, (8, 14, 7, 7, 6, 8, 8), strict=True)))
            base: tuple[float, float] | None = None
            for n in counts:
                c0, t0 = cpu_s(child.pid), time.monotonic()
                latencies, received = asyncio.run(run_row(f"ws://127.0.0.1:{port}/ws", n, args.seconds))
                wall = time.monotonic() - t0
                cpu = (cpu_s(child.pid) - c0) / wall
                if not latencies:
                    print(f"{n:>8}  no messages")
                    continue
                p50, p99 = 1000 * percentile(latencies, 0.5), 1000 * percentile(latencies, 0.99)
                rate = statistics.mean(received) / args.seconds
                if base is None:
                    base = (p99, cpu)
                print(
                    f"{n:>8}  {rate:>14.1f}  {p50:>7.1f}  {p99:>7.1f}  {100 * cpu:>6.1f}  "
                    f"{p99 / base[0]:>8.2f}  {cpu / max(base[1], 1e-9):>8.2f}"
                )
        finally:
            child.terminate()
            child.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())

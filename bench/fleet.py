"""Fleet campaigns scaled out: pack runs per second in one process, on 2 local worker processes and
on a Dask LocalCluster of 2 workers, each as a ratio of the one-process row of the same run, the
workers' peak memory, and a 100,000-pack campaign estimated from the measured rates.

The campaign is ``campaigns/uv-limits.yaml`` (16S packs, 4 h 10 min of use at 1 s each) unless
``--campaign`` names another, with ``--packs`` packs and its arms::

    python bench/fleet.py                 # 40 packs per arm
    python bench/fleet.py --packs 200
    python bench/fleet.py --campaign campaigns/home-day.yaml --packs 20   # one simulated day a pack
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from openbms.apps.fleet import load_campaign, run_campaign

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=40, help="packs per arm")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--campaign", type=Path, default=ROOT / "campaigns" / "uv-limits.yaml")
    args = parser.parse_args()
    if args.packs < 1 or args.batch < 1:
        parser.error("--packs and --batch must be at least 1")
    campaign, base = load_campaign(args.campaign)
    campaign = campaign.model_copy(update={"packs": args.packs, "batch": args.batch})
    runs = args.packs * len(campaign.arms)
    print(
        f"{campaign.name}: {args.packs} packs x {len(campaign.arms)} arms = {runs} pack runs, batches of {args.batch}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    run_campaign(campaign.model_copy(update={"packs": 1}), base)  # compile or load the kernel first
    rows: list[tuple[str, float]] = []

    def timed(label: str, **how: object) -> None:
        start = time.perf_counter()
        run_campaign(campaign, base, **how)  # type: ignore[arg-type]
        rows.append((label, runs / (time.perf_counter() - start)))
        print(f"  {label}: {rows[-1][1]:.2f} pack runs/s", flush=True)

    timed("1 process", workers=1)
    timed("2 worker processes", workers=2)
    try:
        from dask.distributed import LocalCluster
    except ImportError:
        print("  Dask LocalCluster: dask.distributed is not installed (pip install '.[fleet]')")
    else:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            timed("Dask LocalCluster, 2 workers", scheduler=cluster.scheduler_address)
    base_rate = rows[0][1]
    print()
    print(f"{'setup':<32} {'pack runs/s':>12} {'vs 1 process':>13} {'efficiency':>11}")
    for label, rate in rows:
        workers = 1 if label.startswith("1 ") else 2
        print(f"{label:<32} {rate:>12.2f} {rate / base_rate:>13.2f} {rate / base_rate / workers:>11.0%}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS of a worker process: {peak_mib:.0f} MiB")
    best = max(rate for _, rate in rows)
    estimate_s = 100_000 * len(campaign.arms) / best
    print(
        f"100,000 packs x {len(campaign.arms)} arms at the best rate here: {estimate_s / 3600:.1f} h on this "
        f"2-core machine; on N such machines about {estimate_s / 3600:.1f}/N h (batches are independent)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

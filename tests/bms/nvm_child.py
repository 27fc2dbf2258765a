"""The writers that ``test_nvm.py`` kills with SIGKILL: a script, not a test module.

Pytest never collects this file (its name does not start with ``test_``) and no test imports it;
the test runs it with ``sys.executable``.

``python nvm_child.py DB SEED [AUTOCHECKPOINT]`` is one writer. It opens (or reopens, after an
earlier kill) the event log ``DB``, prints ``ready COUNT MAX_ID`` (what it found there) and then
writes into it until it is killed, as fast as it can:

- a twin whose BMS logs every event into the log: a short circuit trips, is removed, and the reset
  button clears it, again and again (fault_set, fet_changed, state_changed, fault_cleared, reset,
  and a persistent snapshot saved after each reset);
- between those cycles, a batch of 1..60 marker events appended in one transaction, each marked
  with its batch number, the batch's size and its place in the batch, so the parent can check that
  a killed transaction left all of its rows or none.

After every append it knows committed it prints (and flushes) the highest id that append got.
``AUTOCHECKPOINT`` (pages, SQLite's default 1000) is lowered by the test so that WAL checkpoints
happen within a short run and some kills land inside one.

``python nvm_child.py serve`` is a fork server: it imports numpy, pydantic and the twin once, then
reads commands on stdin, one a line, and answers each with one line on stdout:
``run DB SEED AUTOCHECKPOINT OUT`` forks a fresh writer process (its stdout goes to the file OUT)
and answers ``pid PID``; ``wait PID`` reaps it and answers ``status S`` (negative: the signal that
ended it). End of input ends the server. A writer costs a fork instead of a 0.5 s interpreter
start, so the test can kill many of them quickly; each kill still ends a whole process.
"""

from __future__ import annotations

import os
import random
import sys
import traceback
from collections.abc import Iterable

from openbms.bms.events import Event
from openbms.bms.nvm import NonVolatileMemory
from openbms.chemistry import load_chemistry
from openbms.profiles import load_profile
from openbms.twin.cells import Spread
from openbms.twin.pack import Topology
from openbms.twin.simulator import Twin, TwinConfig

MARKER = "nvm_kill_test_batch"


class ReportingMemory(NonVolatileMemory):
    """The real event log; it prints the last id of every append that returned (committed)."""

    def append(self, events: Iterable[Event]) -> list[int]:
        ids = super().append(events)
        if ids:
            sys.stdout.write(f"{ids[-1]}\n")
            sys.stdout.flush()
        return ids


def write_until_killed(db: str, seed: int, autocheckpoint: int = 1000) -> None:
    rng = random.Random(seed)
    nvm = ReportingMemory(db)
    nvm._db.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
    found = nvm.events()
    sys.stdout.write(f"ready {len(found)} {found[-1]['id'] if found else 0}\n")
    sys.stdout.flush()
    # No escalation to latched: every short circuit can be cleared by the reset button.
    profile = load_profile(
        "lfp",
        {"short_circuit.escalate_window_s": 0.001, "discharge_overcurrent.escalate_window_s": 0.001},
    )
    twin = Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(10.0),
            topology=Topology(4, 1),
            profile=profile,
            soc=0.5,
            spread=Spread(seed=seed),
        ),
        keep_events=False,
        nvm=nvm,
    )
    batch = 0
    while True:
        twin.short(0, 0.01)
        twin.step()
        twin.clear_short(0)
        twin.step()
        twin.press_reset_button(0)
        twin.step()
        if rng.random() < 0.5:
            batch += 1
            size = rng.randint(1, 60)
            pad = "x" * rng.randint(0, 400)
            nvm.append(
                Event(
                    twin.t_s,
                    0,
                    "warning",
                    {"warning": MARKER, "seed": seed, "batch": batch, "size": size, "k": k, "pad": pad},
                )
                for k in range(size)
            )


def serve() -> None:
    for line in sys.stdin:
        words = line.split()
        if words[0] == "run":
            db, seed, autocheckpoint, out = words[1], int(words[2]), int(words[3]), words[4]
            pid = os.fork()
            if pid == 0:  # the writer: it runs until it is killed
                try:
                    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
                    write_until_killed(db, seed, autocheckpoint)
                except BaseException:
                    traceback.print_exc()  # to the server's stderr, which the test watches
                    sys.stderr.flush()
                finally:
                    os._exit(1)
            answer = f"pid {pid}"
        elif words[0] == "wait":
            _, status = os.waitpid(int(words[1]), 0)
            answer = f"status {os.waitstatus_to_exitcode(status)}"
        else:
            answer = f"error unknown command {words[0]!r}"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        write_until_killed(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))

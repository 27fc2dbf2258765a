"""The twin impersonating a real BMS: it answers JBD, Daly or JK requests with its live values.

The scenario runs in real time (or ``speed`` times faster); between control cycles the emulator
serves its port — a pseudo-terminal (its path is printed) or a TCP port. A sleeping, unpowered or
hung BMS stays silent; monitoring-link errors corrupt its replies; FET-control writes act on the
twin only when allowed, and every write attempt is logged in the event log.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from openbms.devices.canbus import CAN_PROTOCOL, CanBatteryPort
from openbms.devices.errors import FrameError
from openbms.devices.protocols import SERVERS, LiveState, board_settings
from openbms.scenario.runner import ScenarioRunner

MAX_PENDING = 4096
PRESENCE_A = 0.5  # current beyond which the board counts a charger / load as present (as 0x93 mode)


class Emulator:
    """One emulated BMS (pack 0 of the runner's twin) speaking ``protocol``.

    It sits in ``devices``, above ``scenario``: it plays a scenario (through the runner's cycle
    iterator) and answers with the protocol servers; the codecs below it know nothing of the twin."""

    def __init__(self, runner: ScenarioRunner, protocol: str, allow_control: bool = False) -> None:
        if protocol not in (*SERVERS, CAN_PROTOCOL):
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join((*SERVERS, CAN_PROTOCOL))}")
        self.runner = runner
        self.twin = runner.twin
        self.protocol = protocol
        bms = self.twin.bms
        self.settings = board_settings(bms.profile, bms.pack.capacity_ah, runner.scenario.pack.chemistry)
        # A serial protocol answers requests (handle_bytes); the CAN battery broadcasts from its
        # own port (devices.canbus.CanBatteryPort) and has no server here.
        self.server = SERVERS[protocol](self.settings) if protocol in SERVERS else None
        self.allow_control = allow_control
        self.lock = threading.RLock()  # held while the twin steps or a request is answered
        self._pending = b""
        self.requests_seen = 0
        self.frames_rejected = 0
        self.pacer: Pacer | None = None  # set by run_emulator

    # ------------------------------------------------------------------ the board's view
    def live_state(self) -> LiveState:
        """Pack 0's reading as its board reports it: an unreadable tap reads 0 V (a temperature
        25 °C), and a charger or load counts as present when the detect input sees it or current
        flows that way (a current profile charging has no charger object but is a charger to the
        board)."""
        r = self.twin.reading(0)
        current_a = float(np.nan_to_num(r.current_a or 0.0))
        return replace(
            r,
            cell_v=[float(v) for v in np.nan_to_num(np.asarray(r.cell_v or [], dtype=float))],
            temperature_c=[float(t) for t in np.nan_to_num(np.asarray(r.temperature_c or [], dtype=float), nan=25.0)],
            current_a=current_a,
            charger_present=bool(r.charger_present) or current_a > PRESENCE_A,
            load_present=bool(r.load_present) or current_a < -PRESENCE_A,
        )

    def answering(self) -> bool:
        """A sleeping, unpowered or hung BMS keeps its link silent (docs/behaviour.md §4, §5)."""
        return self.twin.listening(0)

    def _control(self, what: str, fields: dict[str, object]) -> bool:
        return self.twin.control_write(0, self.protocol, what, self.allow_control, **fields)

    # ------------------------------------------------------------------ bytes in, bytes out
    def handle_bytes(self, data: bytes) -> bytes:
        """Feed received bytes; return what the board sends back. Garbage is skipped, never fatal."""
        with self.lock:
            self._pending = (self._pending + data)[-MAX_PENDING:]
            out = b""
            while self._pending and self.server is not None:
                frame, consumed = self.server.find_frame(self._pending)
                self._pending = self._pending[consumed:]
                if frame is None:
                    break
                self.requests_seen += 1
                if not self.answering():
                    continue
                try:
                    replies = self.server.answer(frame, self.live_state(), self._control)
                except FrameError:
                    self.frames_rejected += 1
                    continue
                for reply in replies:
                    out += self._maybe_corrupt(reply)
                if consumed == 0:
                    break
            return out

    def _maybe_corrupt(self, reply: bytes) -> bytes:
        """With monitoring-link errors the reply arrives damaged (a flipped bit in its checksum)."""
        if not self.twin.link_errors[0] or len(reply) < 3:
            return reply
        damaged = bytearray(reply)
        damaged[-2] ^= 0x5A
        return bytes(damaged)

    def step(self, most: int = 1) -> int:
        """At least one and at most ``most`` control cycles after the timeline; returns how many."""
        with self.lock:
            return self.runner.rest_cycles(most)


class Pacer:
    """Runs the scenario at ``speed`` × real time, serving the port between control cycles.

    The runner calls the pacer after every control cycle. Ahead of schedule it waits on the port
    (``serve`` with a timeout) until the cycle is due; behind schedule it still looks at the port
    (non-blocking) at least every ``POLL_S`` of wall time, so a request is answered within about
    one control cycle whatever ``speed`` is, and the twin runs as fast as it can. A schedule more
    than ``SLACK_S`` behind is moved up: after a stall the twin never sprints to catch up. The
    speed achieved is measured every ``report_every_s``; while the twin cannot keep pace,
    ``report`` gets a line saying so (and one when it keeps pace again).
    """

    POLL_S = 0.005  # behind schedule: look at the port at least this often (wall time)
    SLACK_S = 0.25  # most the schedule may lag (wall time) before it is moved up
    LAG_S = 0.05  # lagging more than this (wall time) counts as not keeping pace

    def __init__(
        self,
        emulator: Emulator,
        speed: float,
        serve: Callable[[float], None],
        report: Callable[[str], None] | None = None,
        report_every_s: float = 5.0,
    ) -> None:
        self.emulator = emulator
        self.speed = speed
        self.serve = serve
        self.report = report
        self.report_every_s = report_every_s
        now = time.monotonic()
        self._anchor = (now, emulator.twin.t_s)  # wall time, pack time at which they coincide
        self._window = (now, emulator.twin.t_s)
        self._last_serve = now
        self._lagging = False  # in the current measuring window
        self.behind = False  # in the last complete window
        self.achieved_speed: float | None = None  # over the last complete window

    def __call__(self, t_s: float) -> None:
        now = time.monotonic()
        wall0, sim0 = self._anchor
        due = wall0 + (t_s - sim0) / self.speed
        if due <= now:
            lag = now - due
            if lag > self.LAG_S:
                self._lagging = True
            if lag > self.SLACK_S:
                self._anchor = (now - self.SLACK_S, t_s)
            if now - self._last_serve >= self.POLL_S:
                self.serve(0.0)
                self._last_serve = time.monotonic()
        else:
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                self.serve(min(left, 0.05))
            self._last_serve = now = time.monotonic()
        self._measure(t_s, now)

    def _measure(self, t_s: float, now: float) -> None:
        w_wall, w_sim = self._window
        if now - w_wall < self.report_every_s:
            return
        self.achieved_speed = (t_s - w_sim) / (now - w_wall)
        was_behind, self.behind = self.behind, self._lagging
        self._window, self._lagging = (now, t_s), False
        if self.report is None:
            return
        if self.behind:
            self.report(f"twin running at {self.achieved_speed:.4g}× (asked {self.speed:g}×): it cannot keep pace")
        elif was_behind:
            self.report(f"twin keeping pace again at {self.achieved_speed:.4g}× (asked {self.speed:g}×)")

    def current_speed(self) -> float | None:
        """The speed over the last complete window, or so far in this one."""
        if self.achieved_speed is not None:
            return self.achieved_speed
        w_wall, w_sim = self._window
        elapsed = time.monotonic() - w_wall
        return (self.emulator.twin.t_s - w_sim) / elapsed if elapsed > 0 else None

    def status(self) -> str:
        """One line: pack time, the speed achieved against the speed asked, requests seen."""
        speed = self.current_speed()
        running = "not yet measured" if speed is None else f"running at {speed:.4g}×"
        pace = ", cannot keep pace" if self.behind or self._lagging else ""
        return (
            f"pack time {self.emulator.twin.t_s:.0f} s, twin {running} (asked {self.speed:g}×{pace}), "
            f"{self.emulator.requests_seen} requests"
        )


class PtyPort:
    """A pseudo-terminal: the emulator holds the master end; a monitor opens ``path``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)

    def serve(self, emulator: Emulator, timeout_s: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        if not ready:
            return
        try:
            data = os.read(self.master, 1024)
        except OSError:
            return
        reply = emulator.handle_bytes(data)
        if reply:
            with contextlib.suppress(OSError):
                os.write(self.master, reply)

    def close(self) -> None:
        fds, self.master, self.slave = (self.master, self.slave), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


class TcpPort:
    """A TCP port on the loopback interface; one monitor at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(1)
        self.address = self.listener.getsockname()
        self.path = f"socket://{self.address[0]}:{self.address[1]}"
        self.client: socket.socket | None = None

    def serve(self, emulator: Emulator, timeout_s: float) -> None:
        sockets = [self.listener] + ([self.client] if self.client else [])
        ready, _, _ = select.select(sockets, [], [], timeout_s)
        for sock in ready:
            if sock is self.listener:
                if self.client is not None:
                    self.client.close()
                self.client, _ = self.listener.accept()
                continue
            try:
                data = sock.recv(1024)
            except OSError:
                data = b""
            if not data:
                sock.close()
                self.client = None
                continue
            reply = emulator.handle_bytes(data)
            if reply:
                with contextlib.suppress(OSError):
                    sock.sendall(reply)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.listener.close()


def run_emulator(
    emulator: Emulator,
    port: PtyPort | TcpPort | CanBatteryPort,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    linger_s: float | None = None,
    report: Callable[[str], None] | None = None,
    report_every_s: float = 5.0,
) -> None:
    """Play the scenario in (scaled) real time while answering ``port``; afterwards keep the
    twin running at rest for ``linger_s`` (None: until ``stop`` is set). When the twin cannot
    keep pace it runs as fast as it can, still answering, and ``report`` is told the speed it
    achieves; ``emulator.pacer.status()`` says it at any time."""
    stop = stop or threading.Event()

    def serve(timeout_s: float) -> None:
        if stop.is_set():
            raise _Stopped
        port.serve(emulator, timeout_s)

    pacer = Pacer(emulator, speed, serve, report, report_every_s)
    emulator.pacer = pacer
    cycles = emulator.runner.cycles()
    try:
        while True:
            with emulator.lock:  # the twin steps (and the timeline acts on it) only under the lock
                try:
                    t_s = next(cycles)
                except StopIteration:
                    break
            pacer(t_s)
        end = None if linger_s is None else time.monotonic() + linger_s
        chunk = 1
        while end is None or time.monotonic() < end:
            t_next = emulator.twin.t_s + chunk * emulator.twin.dt_s
            pacer(t_next)
            chunk = emulator.step(emulator.runner.max_chunk_cycles)
    except _Stopped:
        pass


class _Stopped(Exception):
    """Raised inside the pacing loop to end the emulation cleanly."""

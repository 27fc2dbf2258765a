"""The ``openbms`` command.

Errors reach the user as one sentence and an exit code (2 for invalid input, 1 for a failed
expectation); a traceback only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from openbms import __version__
from openbms.bms.nvm import NonVolatileMemory, NvmError
from openbms.units import format_duration, parse_duration_s

if TYPE_CHECKING:  # the simulation, numpy and matplotlib load only when a command needs them
    from openbms.devices.history import HistoryRecorder
    from openbms.devices.reader import DeviceReader, Poll
    from openbms.scenario.replay import Arm, ArmResult, LogOutcome
    from openbms.scenario.replay import Log as ReplayLog
    from openbms.scenario.runner import RunResult, ScenarioRunner, TelemetrySink
    from openbms.scenario.schema import Scenario, Step

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="openbms: a battery management system with a digital twin of the pack.",
)
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
MAX_LISTED_PROBLEMS = 20  # a log's skipped rows and gaps listed by replay (JSON has them all)
NVM_HELP = (
    "Keep the BMS's non-volatile memory (event log, persistent faults and values) in this SQLite file; "
    "the BMS powers on from what it holds. One process at a time."
)

MQTT_HELP = (
    "Publish to this MQTT broker with Home Assistant discovery: mqtt://host:1883 or mqtt://user:password@host:1883 "
    "(controls need the user and --allow-control)."
)
MQTT_NODE_HELP = "This battery's id in the MQTT topics (openbms/NODE/…)."
BAUD_HELP = "Serial baud rate (default per protocol: JBD 9600, Daly 9600, JK 115200)."


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the openbms version and exit."),
    ] = False,
) -> None:
    """openbms: a battery management system with a digital twin of the pack."""


class UserError(Exception):
    """A problem the user can fix; printed as one sentence."""


def _consoles(json_out: bool) -> tuple[Console, Console]:
    out = Console(stderr=json_out, highlight=False)
    err = Console(stderr=True, highlight=False)
    return out, err


def json_line(doc: object) -> str:
    """One line of strict JSON: a non-finite number (a NaN reading) becomes null, since strict
    parsers reject the ``NaN`` and ``Infinity`` tokens Python would write."""
    return json.dumps(_finite_or_null(doc), allow_nan=False) + "\n"


def _finite_or_null(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def _duration_option(text: str, option: str) -> float:
    """A duration given on the command line (``30s``, ``2min``); refused in one sentence."""
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def _open_nvm(path: Path | None) -> NonVolatileMemory | None:
    """The event log the user named (``--nvm``), or None for one in memory."""
    if path is None:
        return None
    try:
        return NonVolatileMemory(path)
    except NvmError as exc:
        raise UserError(f"--nvm: {exc}") from None


def _run_one(
    loaded: tuple[Scenario, list[Step]],
    every_s: float | None,
    err: Console,
    show_progress: bool,
    nvm: NonVolatileMemory | None = None,
    output: Path | None = None,
    engine: str = "reference",
    telemetry_format: str = "csv",
) -> tuple[RunResult, float, ScenarioRunner, list[Path]]:
    """Run one scenario; with ``output`` its files are staged while it runs (the telemetry
    streams to disk) and swapped into that folder as a set at the end."""
    from openbms.scenario.output import OutputSet
    from openbms.scenario.plot import plot_run
    from openbms.scenario.runner import telemetry_columns

    scenario, steps = loaded
    staged = None
    if output is not None:
        staged = OutputSet(output, telemetry_columns(scenario.pack.series), telemetry_format)
    try:
        sink: TelemetrySink | None = staged.write_block if staged is not None else None
        result, wall_s, runner = _play(scenario, steps, every_s, err, show_progress, nvm, sink, engine)
    except BaseException:
        if staged is not None:
            staged.abandon()
        raise
    files = staged.commit(result, plot_run) if staged is not None else []
    return result, wall_s, runner, files


ENGINES = ("fast", "reference")
DEFAULT_ENGINE = "fast"
ENGINE_HELP = (
    "fast: quiet control cycles in the compiled kernel, the others in Python (the default); "
    "reference: every cycle in Python. Both give the same events and telemetry."
)


def _ready_engine(engine: str, err: Console) -> str:
    """Check ``--engine`` and, for the fast engine, compile (or load) its kernel now, so the
    compile time is shown once and never counted as simulation time."""
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine != "fast":
        return engine
    try:
        from openbms.fast.engine import warm_up
    except ImportError as exc:
        raise UserError(f"--engine fast: {exc}; or run with --engine reference") from None
    seconds = warm_up()
    if seconds > WARM_UP_SHOWN_S:
        err.print(f"compiled the fast engine in {seconds:.0f} s (once: it is cached for the next runs)")
    return engine


EMULATE_CHUNK_WALL_S = 0.02  # wall time one call of the fast engine may cover while emulating
WARM_UP_SHOWN_S = 2.0  # a kernel loaded from numba's cache takes well under this
PIPE_PROGRESS_EVERY_S = 5.0  # wall time between progress lines when stderr is not a terminal


class PipeProgress:
    """A progress line on a non-terminal stream (a pipe, a CI log) every ``every_s`` of wall time:
    simulated time done, speed against real time and the time left, so a long run is never silent
    there (the live bar only draws on a terminal)."""

    def __init__(
        self,
        name: str,
        planned_s: float,
        write: Callable[[str], object],
        every_s: float = PIPE_PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.planned_s, self.write, self.every_s, self.clock = name, planned_s, write, every_s, clock
        self.start = clock()
        self.next_at = self.start + every_s

    def __call__(self, t_s: float) -> None:
        now = self.clock()
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        wall = max(now - self.start, 1e-9)
        done = min(t_s / self.planned_s, 1.0) if self.planned_s > 0 else 1.0
        left = wall * (1.0 - done) / done if done > 0 else float("nan")
        eta = f"about {format_duration(left)} left" if math.isfinite(left) else "time left unknown"
        self.write(
            f"{self.name}: {format_duration(t_s)} of {format_duration(self.planned_s)} simulated "
            f"({100 * done:.0f} %), {t_s / wall:,.0f}× real time, {eta}\n"
        )


def _play(
    scenario: Scenario,
    steps: list[Step],
    every_s: float | None,
    err: Console,
    show_progress: bool,
    nvm: NonVolatileMemory | None,
    sink: TelemetrySink | None,
    engine: str = "reference",
) -> tuple[RunResult, float, ScenarioRunner]:
    from openbms.diagnose.from_twin import diagnosis_of
    from openbms.scenario.runner import ScenarioRunner

    runner = ScenarioRunner(
        scenario, steps, every_s=every_s, nvm=nvm, telemetry_sink=sink, diagnoser=diagnosis_of, engine=engine
    )
    planned = max(runner.planned_duration_s(), 1.0)
    start = time.perf_counter()
    on_terminal = err.is_terminal
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[simulated]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not (show_progress and on_terminal),
    ) as progress:
        task = progress.add_task(scenario.name[:40], total=planned, simulated="")
        line = None
        if show_progress and not on_terminal:
            line = PipeProgress(scenario.name[:40], planned, err.file.write, PIPE_PROGRESS_EVERY_S)

        def report(t_s: float) -> None:
            progress.update(task, completed=min(t_s, planned), simulated=f"t={t_s / 60:.1f} min")
            if line is not None:
                line(t_s)

        result = runner.run(progress=report)
    return result, time.perf_counter() - start, runner


def _out_problem(out: Path) -> str | None:
    """Why the results could not be written to folder ``out`` (None when they can), found before
    the simulation runs rather than after it. Missing folders are created, so the nearest existing
    ancestor must be a folder this process may write in."""
    if out.exists():
        if not out.is_dir():
            return "is a file, not a folder; name a folder for the results"
        if not os.access(out, os.W_OK | os.X_OK):
            return "this folder is not writable"
        return None
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so no folder can be created there"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create the folder: {ancestor} is not writable"
    return None


def _simulate(
    scenarios: list[Path],
    json_out: bool,
    out: Path | None,
    every: str | None,
    debug: bool,
    save_state: Path | None = None,
    nvm_path: Path | None = None,
    engine: str = DEFAULT_ENGINE,
    telemetry_format: str = "csv",
) -> int:
    from openbms.scenario.output import TELEMETRY_FORMATS, parquet_available
    from openbms.scenario.schema import ScenarioError, load_scenario

    console, err = _consoles(json_out)
    if telemetry_format not in TELEMETRY_FORMATS:
        raise UserError(f"--telemetry must be one of {', '.join(TELEMETRY_FORMATS)}, not {telemetry_format!r}")
    if telemetry_format != "csv" and out is None:
        raise UserError("--telemetry names the telemetry file of --out; give --out DIR too")
    if telemetry_format == "parquet" and not parquet_available():
        raise UserError("--telemetry parquet needs pyarrow: pip install 'openbms[parquet]'")
    try:
        every_s = parse_duration_s(every) if every is not None else None
        if every_s is not None and every_s <= 0:
            raise ValueError("--every must be a positive duration")
    except ValueError as exc:
        err.print(f"[red]error:[/] --every: {escape(str(exc))}")
        return EXIT_INVALID
    if out is not None and (problem := _out_problem(out)) is not None:
        err.print(f"[red]error:[/] --out {escape(str(out))}: {problem}", soft_wrap=True)
        return EXIT_INVALID
    # Validate every file before running any, so a typo in the last one costs no simulation time.
    try:
        loaded = [load_scenario(path) for path in scenarios]
    except ScenarioError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    if save_state is not None and len(scenarios) != 1:
        err.print("[red]error:[/] --save-state takes exactly one scenario")
        return EXIT_INVALID
    engine = _ready_engine(engine, err)
    nvm = _open_nvm(nvm_path)
    try:
        return _simulate_each(
            scenarios, loaded, json_out, out, every_s, save_state, nvm, console, err, engine, telemetry_format
        )
    finally:
        if nvm is not None:
            nvm.close()


def _simulate_each(
    scenarios: list[Path],
    loaded: list[tuple[Scenario, list[Step]]],
    json_out: bool,
    out: Path | None,
    every_s: float | None,
    save_state: Path | None,
    nvm: NonVolatileMemory | None,
    console: Console,
    err: Console,
    engine: str = "reference",
    telemetry_format: str = "csv",
) -> int:
    """Run the scenarios one after another (on one board when they share ``nvm``)."""
    from openbms.scenario.output import slug
    from openbms.scenario.report import print_summary
    from openbms.scenario.schema import ScenarioError

    code = EXIT_OK
    used: set[str] = set()
    for path, scenario in zip(scenarios, loaded, strict=True):
        folder = None
        if out is not None:
            name = slug(path.stem)
            while name in used:
                name += "-2"
            used.add(name)
            folder = out if len(scenarios) == 1 else out / name
        try:
            result, wall_s, runner, files = _run_one(
                scenario, every_s, err, True, nvm, folder, engine, telemetry_format
            )
        except (ScenarioError, NvmError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            return EXIT_INVALID
        if save_state is not None:
            from openbms.diagnose.from_twin import snapshot_of
            from openbms.diagnose.snapshot import save_state as write_state

            write_state(snapshot_of(runner.twin), save_state)
        if json_out:
            doc = result.as_dict()
            doc["wall_s"] = round(wall_s, 3)
            sys.stdout.write(json_line(doc))
        else:
            print_summary(console, result, wall_s, files)
        if not result.passed:
            code = EXIT_FAILED
    return code


def _exit(code_fn: object, debug: bool) -> None:
    """Run ``code_fn`` and exit with its code; unexpected errors become one sentence."""
    try:
        code = code_fn()  # type: ignore[operator]
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]interrupted[/]")
        raise typer.Exit(130) from None
    except (UserError, OSError) as exc:
        if debug:
            raise
        Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None
    except Exception as exc:  # noqa: BLE001 - the user sees one sentence, --debug shows all
        if debug:
            raise
        Console(stderr=True).print(
            f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (run again with --debug for details)"
        )
        raise typer.Exit(EXIT_INTERNAL) from None
    raise typer.Exit(code)


@app.command()
def simulate(
    scenarios: Annotated[list[Path], typer.Argument(help="Scenario YAML files to run.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document per scenario.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write telemetry, events and a plot here.")] = None,
    every: Annotated[str | None, typer.Option("--every", help="Telemetry interval, e.g. 1s (default: dt).")] = None,
    save_state: Annotated[
        Path | None, typer.Option("--save-state", help="Save the final BMS state and history (JSON) for diagnose.")
    ] = None,
    nvm: Annotated[Path | None, typer.Option("--nvm", help=NVM_HELP)] = None,
    engine: Annotated[str, typer.Option("--engine", help=ENGINE_HELP)] = DEFAULT_ENGINE,
    telemetry: Annotated[
        str,
        typer.Option(
            "--telemetry",
            help="The telemetry file of --out: csv (the default) or parquet (every digit, compressed; long runs).",
        ),
    ] = "csv",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Run scenarios on the twin: exit 0 when every expectation holds, 1 when one fails, 2 when a
    file or an argument is invalid."""
    _exit(lambda: _simulate(scenarios, json_out, out, every, debug, save_state, nvm, engine, telemetry), debug)


def _diagnose(
    scenario: Path | None,
    state: Path | None,
    device: str | None,
    json_out: bool,
    apply_it: bool,
    guide: bool,
    baud: int | None = None,
    history: Path | None = None,
    profile_name: str | None = None,
) -> int:
    from openbms.diagnose.apply import apply as apply_procedure
    from openbms.diagnose.engine import diagnose
    from openbms.diagnose.from_twin import snapshot_of
    from openbms.diagnose.guide import run_guide
    from openbms.diagnose.report import diagnosis_json, print_applied, print_diagnosis, print_guide_question
    from openbms.diagnose.snapshot import SnapshotError, load_state
    from openbms.scenario.schema import ScenarioError, load_scenario

    console, err = _consoles(json_out)
    sources = [x for x in (scenario, state, device) if x is not None]
    if len(sources) + int(guide) != 1:
        err.print("[red]error:[/] give exactly one of SCENARIO, --state FILE, --device URL or --guide")
        return EXIT_INVALID
    if baud is not None and device is None:
        err.print("[red]error:[/] --baud goes with --device (the serial port's rate)")
        return EXIT_INVALID
    if history is not None and device is None:
        err.print("[red]error:[/] --history goes with --device (the recorded history of that board)")
        return EXIT_INVALID
    if profile_name is not None and device is None:
        err.print(
            "[red]error:[/] --profile goes with --device (a board does not say its chemistry; a scenario and a "
            "saved state name their own, and the guide asks)"
        )
        return EXIT_INVALID
    if apply_it and scenario is None:
        err.print("[red]error:[/] --apply works on a scenario (the twin); a saved state or a device has no twin")
        return EXIT_INVALID
    runner = None
    if guide:
        verdict = run_guide(lambda q: print_guide_question(console, q))
        snapshot_state = None
    elif device is not None:
        from openbms.bms.profile import ProfileError
        from openbms.devices.history import HistoryError, load_history
        from openbms.devices.reader import DEVICE_ERRORS
        from openbms.diagnose.from_device import read_device_snapshot
        from openbms.profiles import builtin_profiles, load_profile

        if profile_name is not None and profile_name not in builtin_profiles():
            err.print(
                f"[red]error:[/] --profile {escape(profile_name)!r}: choose one of {', '.join(builtin_profiles())}"
            )
            return EXIT_INVALID
        try:
            profile = None if profile_name is None else load_profile(profile_name)
            # the file first: a wrong --history is refused before the port is opened
            events = None if history is None else load_history(history, device)
            snapshot = read_device_snapshot(device, baud, events, profile)
        except (*DEVICE_ERRORS, HistoryError, ProfileError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            return EXIT_INVALID
        verdict, snapshot_state = diagnose(snapshot), snapshot.state
    elif state is not None:
        try:
            snapshot = load_state(state)
        except SnapshotError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            return EXIT_INVALID
        verdict, snapshot_state = diagnose(snapshot), snapshot.state
    else:
        assert scenario is not None
        try:
            _result, _wall, runner, _files = _run_one(load_scenario(scenario), None, err, show_progress=not json_out)
        except ScenarioError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            return EXIT_INVALID
        snapshot = snapshot_of(runner.twin)
        verdict, snapshot_state = diagnose(snapshot), snapshot.state
    applied = None
    if apply_it and runner is not None:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), console=err, transient=True) as progress:
            task = progress.add_task("applying", total=len(verdict.steps) or 1)

            def step_done(i: int, total: int, text: str) -> None:
                progress.update(task, completed=i - 1, total=total, description=f"step {i}/{total}: {text[:40]}")

            applied = apply_procedure(runner.twin, verdict, progress=step_done)
    if json_out:
        sys.stdout.write(json_line(diagnosis_json(verdict, applied)))
    else:
        print_diagnosis(console, verdict, snapshot_state)
        if applied is not None:
            print_applied(console, applied)
    if applied is not None and not applied.ok:
        return EXIT_FAILED
    return EXIT_OK


@app.command()
def diagnose(
    scenario: Annotated[Path | None, typer.Argument(help="Run this scenario and diagnose its final state.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="A state saved by simulate --save-state.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="A real BMS, e.g. jbd:/dev/ttyUSB0.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    apply_it: Annotated[
        bool, typer.Option("--apply", help="Carry the procedure out in the twin and check it.")
    ] = False,
    guide: Annotated[bool, typer.Option("--guide", help="Ask questions instead of reading a BMS.")] = False,
    baud: Annotated[int | None, typer.Option("--baud", help=BAUD_HELP)] = None,
    history: Annotated[
        Path | None,
        typer.Option("--history", help="The board's history recorded by monitor --record (with --device)."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="The pack's profile (lfp, nmc, lto) to judge a --device with; default lfp."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """What is wrong with the BMS, which reset is safe, and the steps (docs/behaviour.md §10)."""
    _exit(lambda: _diagnose(scenario, state, device, json_out, apply_it, guide, baud, history, profile), debug)


def demo_scenario_path() -> Path:
    return Path(str(resources.files("openbms.scenario").joinpath("library", "demo.yaml")))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where to write the plot and telemetry.")] = Path("openbms-demo"),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Run the built-in demonstration on the twin (a 16S 100 Ah LiFePO4 pack) and plot it."""
    _exit(lambda: _simulate([demo_scenario_path()], False, out, None, debug), debug)


def _monitor(
    device: str,
    interval_s: float,
    count: int | None,
    json_out: bool,
    baud: int | None = None,
    record: Path | None = None,
    keep_s: float | None = None,
    mqtt_url: str | None = None,
    mqtt_node: str = "openbms",
) -> int:
    from openbms.devices.ble import read_ble
    from openbms.devices.history import KEEP_S, HistoryError, HistoryRecorder
    from openbms.devices.reader import DEVICE_ERRORS, DeviceError, DeviceReader, Poll, parse_url

    console, err = _consoles(json_out)
    recorder = None
    created = record is not None and not record.exists()
    try:
        protocol, port = parse_url(device)
        if protocol == "ble" and baud is not None:
            raise DeviceError("--baud applies to serial ports; a BLE device has no baud rate")
        # the history file before the device: a file that cannot be recorded into is refused first
        recorder = None if record is None else HistoryRecorder(record, device, keep_s or KEEP_S)
        if protocol == "ble":
            reading = read_ble(port)
            polls_source = None
        else:
            polls_source = DeviceReader(device, baud=baud)
    except (*DEVICE_ERRORS, HistoryError) as exc:
        if recorder is not None:
            recorder.close()
        if created and record is not None:
            # nothing was recorded: leave no empty history behind a mistyped port
            for leftover in (record, Path(f"{record}-wal"), Path(f"{record}-shm")):
                leftover.unlink(missing_ok=True)
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_INVALID
    publisher = None
    keep: Callable[[Poll], None] | None = None
    if mqtt_url is not None and polls_source is not None:
        from openbms.apps.mqtt import MqttError, poll_publisher

        try:
            publisher, keep = poll_publisher(mqtt_url, mqtt_node, interval_s)
            publisher.start()
        except MqttError as exc:
            polls_source.close()
            if recorder is not None:
                recorder.close()
            err.print(f"[red]error:[/] {escape(str(exc))}")
            return EXIT_INVALID
    try:
        if polls_source is None:
            return _show_one(Poll(reading), device, json_out, console, recorder)
        return _poll_loop(polls_source, device, interval_s, count, json_out, console, recorder, keep)
    except HistoryError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_INVALID
    finally:
        if publisher is not None:
            publisher.stop()
        if polls_source is not None:
            polls_source.close()
        if recorder is not None:
            recorder.close()


def _show_one(poll: Poll, device: str, json_out: bool, console: Console, recorder: HistoryRecorder | None) -> int:
    """A single reading (BLE): shown, and recorded when asked."""
    from openbms.devices.monitor import poll_table, reading_json

    if recorder is not None:
        recorder.record(poll, time.time())
    if json_out:
        sys.stdout.write(json_line(reading_json(poll)))
    else:
        console.print(poll_table(device, poll))
    return EXIT_OK


def _poll_loop(
    source: DeviceReader,
    device: str,
    interval_s: float,
    count: int | None,
    json_out: bool,
    console: Console,
    recorder: HistoryRecorder | None,
    on_poll: Callable[[Poll], None] | None = None,
) -> int:
    """Poll every ``interval_s`` until ``count``: each poll shown, and recorded when asked (a
    failed poll too: the silence is part of the history), and handed to ``on_poll`` (the MQTT
    publisher's latest); exit 1 when any poll failed."""
    from rich.live import Live

    from openbms.devices.monitor import poll_table, reading_json

    done = 0
    worst = EXIT_OK
    with (
        Live(console=console, auto_refresh=False, transient=False) if not json_out else contextlib.nullcontext() as live
    ):
        while count is None or done < count:
            started = time.monotonic()
            poll = source.poll()
            done += 1
            if recorder is not None:
                recorder.record(poll, time.time())
            if on_poll is not None:
                on_poll(poll)
            if not poll.ok:
                worst = EXIT_FAILED
            if json_out:
                sys.stdout.write(json_line(reading_json(poll)))
                sys.stdout.flush()
            elif live is not None:
                live.update(poll_table(device, poll), refresh=True)
            if count is None or done < count:
                time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return worst


@app.command()
def monitor(
    device: Annotated[
        str, typer.Option("--device", help="e.g. jbd:/dev/ttyUSB0, daly:socket://127.0.0.1:7000, ble:ADDR")
    ],
    interval: Annotated[str, typer.Option("--interval", help="Time between polls.")] = "1s",
    count: Annotated[int | None, typer.Option("--count", help="Stop after this many polls.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line per poll.")] = False,
    baud: Annotated[int | None, typer.Option("--baud", help=BAUD_HELP)] = None,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Keep a history of every poll in this file (SQLite) for diagnose --history."),
    ] = None,
    keep: Annotated[str, typer.Option("--keep", help="How long the --record history keeps polls.")] = "7d",
    mqtt: Annotated[str | None, typer.Option("--mqtt", help=MQTT_HELP)] = None,
    mqtt_node: Annotated[str, typer.Option("--mqtt-node", help=MQTT_NODE_HELP)] = "openbms",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Read a real BMS (or an emulated one) live: cells, temperatures, current, SOC, FETs, faults."""

    def body() -> int:
        interval_s = _duration_option(interval, "--interval")
        if count is not None and count < 1:
            Console(stderr=True).print("[red]error:[/] --count must be at least 1")
            return EXIT_INVALID
        keep_s = _duration_option(keep, "--keep")
        if keep_s <= 0:
            raise UserError("--keep must be longer than 0 s")
        return _monitor(device, interval_s, count, json_out, baud, record, keep_s, mqtt, mqtt_node)

    _exit(body, debug)


def _probe(port: str, timeout_s: float, baud: int | None, json_out: bool) -> int:
    from openbms.devices.reader import DEVICE_ERRORS, DeviceError, probe

    console, err = _consoles(json_out)
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        err.print("[red]error:[/] --timeout must be a positive duration")
        return EXIT_INVALID
    tried: list[dict[str, object]] = []
    found = None
    try:
        if baud is not None and baud <= 0:
            raise DeviceError(f"--baud {baud} is not a baud rate; JBD and Daly boards use 9600, JK RS485 115200")
        for attempt in probe(port, timeout_s, None if baud is None else (baud,)):
            tried.append({"protocol": attempt.protocol, "baud": attempt.baud, "answered": attempt.reading is not None})
            if not json_out:
                mark = "[green]answered[/]" if attempt.reading is not None else "no reply"
                err.print(f"  {attempt.protocol} at {attempt.baud} baud: {mark}")
            if attempt.reading is not None:
                found = attempt
    except DEVICE_ERRORS as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_INVALID
    if json_out:
        doc: dict[str, object] = {"port": port, "found": None, "tried": tried}
        if found is not None and found.reading is not None:
            doc["found"] = {
                "protocol": found.protocol,
                "baud": found.baud,
                "device_name": found.reading.name,
                "device": f"{found.protocol}:{port}",
            }
        sys.stdout.write(json_line(doc))
    elif found is not None and found.reading is not None:
        name = found.reading.name or "not reported"
        console.print(
            f"{escape(port)}: a {found.protocol.upper()} BMS answered at {found.baud} baud (device name: "
            f"{escape(name)}); read it with --device {escape(found.protocol)}:{escape(port)} --baud {found.baud}"
        )
    else:
        console.print(
            f"{escape(port)}: nothing answered (tried {len(tried)} protocol and baud combinations); check the "
            "port, the TX/RX wiring and that the BMS has power"
        )
    return EXIT_OK if found is not None else EXIT_FAILED


@app.command()
def probe(
    port: Annotated[str, typer.Argument(help="A serial port or URL, e.g. /dev/ttyUSB0 or socket://127.0.0.1:7000.")],
    timeout: Annotated[str, typer.Option("--timeout", help="How long to wait for each reply.")] = "0.3s",
    baud: Annotated[int | None, typer.Option("--baud", help="Try only this rate (default: 9600 and 115200).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Find which BMS answers on PORT: tries JBD, Daly and JK at the usual baud rates in turn; exit 0
    when one answered, 1 when none did."""

    def body() -> int:
        timeout_s = _duration_option(timeout, "--timeout")
        return _probe(port, timeout_s, baud, json_out)

    _exit(body, debug)


def _emulate(
    scenario: Path,
    protocol: str,
    speed: float,
    tcp: int | None,
    allow_control: bool,
    linger: str | None,
    nvm_path: Path | None = None,
    engine: str = DEFAULT_ENGINE,
    can: tuple[str, str] | None = None,
    mqtt: tuple[str, str] | None = None,
) -> int:
    from openbms.devices.canbus import CAN_PROTOCOL, INTERFACES
    from openbms.devices.protocols import SERVERS

    err = Console(stderr=True, highlight=False)
    protocols = (*SERVERS, CAN_PROTOCOL)
    if protocol not in protocols:
        err.print(f"[red]error:[/] --protocol must be one of {', '.join(protocols)}")
        return EXIT_INVALID
    if protocol == CAN_PROTOCOL and (can is None or can[0] not in INTERFACES or not can[1]):
        err.print(f"[red]error:[/] {CAN_PROTOCOL} needs --can-interface ({' or '.join(INTERFACES)}) and --channel")
        return EXIT_INVALID
    if protocol != CAN_PROTOCOL and can is not None:
        err.print(f"[red]error:[/] --can-interface and --channel go with --protocol {CAN_PROTOCOL}")
        return EXIT_INVALID
    if protocol == CAN_PROTOCOL and tcp is not None:
        err.print(f"[red]error:[/] --tcp serves a serial protocol; {CAN_PROTOCOL} speaks on --channel")
        return EXIT_INVALID
    if not (speed > 0 and math.isfinite(speed)):
        err.print("[red]error:[/] --speed must be positive (a finite number)")
        return EXIT_INVALID
    if tcp is not None and not 0 <= tcp <= 65535:
        err.print(f"[red]error:[/] --tcp {tcp} is not a port number (0–65535)")
        return EXIT_INVALID
    try:
        linger_s = parse_duration_s(linger) if linger is not None else None
    except ValueError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    runner = _live_runner(scenario, nvm_path, engine, speed, err)
    if runner is None:
        return EXIT_INVALID
    try:
        return _serve(runner, runner.scenario.name, protocol, speed, tcp, allow_control, linger_s, err, can, mqtt)
    finally:
        runner.nvm.close()


def _live_runner(
    scenario: Path, nvm_path: Path | None, engine: str, speed: float, err: Console
) -> ScenarioRunner | None:
    """A runner of ``scenario`` for a twin that lives in (scaled) real time (emulate, serve), or
    None when it cannot be made (the reason printed). A call of the fast engine covers at most a
    short stretch of wall time at this speed, so the port or the page is served between calls."""
    from openbms.diagnose.from_twin import diagnosis_of
    from openbms.scenario.runner import ScenarioRunner
    from openbms.scenario.schema import ScenarioError, load_scenario

    try:
        scenario_model, steps = load_scenario(scenario)
    except (ScenarioError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return None

    engine = _ready_engine(engine, err)
    nvm = _open_nvm(nvm_path)
    try:
        runner = ScenarioRunner(scenario_model, steps, nvm=nvm, diagnoser=diagnosis_of, engine=engine)
    except (ScenarioError, NvmError) as exc:
        if nvm is not None:
            nvm.close()
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return None
    runner.max_chunk_cycles = max(1, int(speed * EMULATE_CHUNK_WALL_S / scenario_model.dt))
    return runner


def _serve(
    runner: ScenarioRunner,
    name: str,
    protocol: str,
    speed: float,
    tcp: int | None,
    allow_control: bool,
    linger_s: float | None,
    err: Console,
    can: tuple[str, str] | None = None,
    mqtt: tuple[str, str] | None = None,
) -> int:
    from openbms.devices.canbus import CanBatteryPort, CanUnavailable
    from openbms.devices.emulator import Emulator, PtyPort, TcpPort, run_emulator

    emulator = Emulator(runner, protocol, allow_control=allow_control)
    publisher = None
    if mqtt is not None:
        from openbms.apps.mqtt import MqttError, emulator_publisher

        try:
            publisher = emulator_publisher(mqtt[0], emulator, mqtt[1], allow_control)
        except MqttError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            return EXIT_INVALID
    try:
        port: PtyPort | TcpPort | CanBatteryPort
        if can is not None:
            # The inverter stops discharging at the pack's under-voltage release level.
            floor_v = runner.twin.config.topology.series * emulator.settings.cell_undervoltage_release_v
            port = CanBatteryPort(can[0], can[1], floor_v)
        else:
            port = TcpPort(tcp) if tcp is not None else PtyPort()
    except (OSError, CanUnavailable) as exc:
        err.print(f"[red]error:[/] cannot open the port: {escape(str(exc))}")
        return EXIT_INVALID
    print(port.path, flush=True)
    status_signal = getattr(signal, "SIGUSR1", None)
    err.print(
        f"emulating a {protocol.upper()} BMS on {port.path} (scenario {name!r}, {speed:g}× real time"
        + (", FET control allowed" if allow_control else ", FET control refused")
        + "); Ctrl-C to stop"
        + (f", kill -USR1 {os.getpid()} for a status line" if status_signal is not None else "")
    )

    def say(line: str) -> None:
        err.print(escape(line))

    def status(*_: object) -> None:
        if emulator.pacer is not None:
            say(emulator.pacer.status())

    previous = None
    if status_signal is not None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(status_signal, status)
    if publisher is not None:
        publisher.start()
    try:
        run_emulator(emulator, port, speed=speed, linger_s=linger_s, report=say)
    except KeyboardInterrupt:
        pass
    finally:
        if publisher is not None:
            publisher.stop()
        if previous is not None and status_signal is not None:
            signal.signal(status_signal, previous)
        port.close()
    status()
    return EXIT_OK


@app.command()
def emulate(
    scenario: Annotated[Path, typer.Argument(help="The scenario the emulated pack lives through.")],
    protocol: Annotated[str, typer.Option("--protocol", help="jbd, daly, jk or pylontech-can.")] = "jbd",
    speed: Annotated[float, typer.Option("--speed", help="Times faster than real time.")] = 1.0,
    tcp: Annotated[int | None, typer.Option("--tcp", help="Serve a TCP port instead of a pseudo-terminal.")] = None,
    allow_control: Annotated[
        bool, typer.Option("--allow-control", help="Let FET-control writes act on the twin.")
    ] = False,
    linger: Annotated[
        str | None, typer.Option("--linger", help="Keep running this long after the timeline (default: forever).")
    ] = None,
    nvm: Annotated[Path | None, typer.Option("--nvm", help=NVM_HELP)] = None,
    engine: Annotated[str, typer.Option("--engine", help=ENGINE_HELP)] = DEFAULT_ENGINE,
    can_interface: Annotated[
        str | None, typer.Option("--can-interface", help="pylontech-can: socketcan (a real adapter, vcan) or virtual.")
    ] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="pylontech-can: the CAN channel, e.g. can0.")] = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help=MQTT_HELP)] = None,
    mqtt_node: Annotated[str, typer.Option("--mqtt-node", help=MQTT_NODE_HELP)] = "openbms",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Run the twin as a JBD, Daly or JK BMS on a pseudo-terminal (its path is printed) or a TCP port,
    or as a Pylontech-compatible battery on an inverter's CAN bus (--protocol pylontech-can)."""
    can = None if can_interface is None and channel is None else (can_interface or "", channel or "")
    broker = None if mqtt is None else (mqtt, mqtt_node)
    _exit(lambda: _emulate(scenario, protocol, speed, tcp, allow_control, linger, nvm, engine, can, broker), debug)


def _serve_live(
    scenario: Path | None,
    device: str | None,
    host: str,
    port: int,
    speed: float,
    token_file: Path | None,
    allow_control: bool,
    profile: str,
    interval: str,
    record: Path | None,
    keep: str,
    nvm_path: Path | None,
    engine: str,
    mqtt_url: str | None = None,
    mqtt_node: str = "openbms",
) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        import uvicorn

        from openbms.apps.server import create_app
    except ImportError as exc:
        missing = exc.name or "a web package"
        err.print(f"[red]error:[/] serve needs the serve extra: pip install '.\\[serve]' ({missing} is missing)")
        return EXIT_INVALID
    from openbms.apps.auth import TokenError, default_token_path, load_or_create_token
    from openbms.apps.live import DeviceSource, LiveSource, TwinSource

    if scenario is not None and device is not None:
        err.print("[red]error:[/] give a scenario or --device, not both")
        return EXIT_INVALID
    if not 0 <= port <= 65535:
        err.print(f"[red]error:[/] --port {port} is not a port number (0–65535)")
        return EXIT_INVALID
    if not (speed > 0 and math.isfinite(speed)):
        err.print("[red]error:[/] --speed must be positive (a finite number)")
        return EXIT_INVALID
    source: LiveSource
    nvm = None
    if device is not None:
        from openbms.apps.live import default_history_path
        from openbms.devices.history import HistoryError
        from openbms.devices.reader import DEVICE_ERRORS

        try:
            interval_s = _duration_option(interval, "--interval")
            keep_s = _duration_option(keep, "--keep")
            if keep_s <= 0:
                raise UserError("--keep must be longer than 0 s")
            path = record if record is not None else default_history_path(device)
            path.parent.mkdir(parents=True, exist_ok=True)
            source = DeviceSource(device, interval_s, profile, path, keep_s)
        except OSError as exc:
            err.print(f"[red]error:[/] cannot keep the history: {escape(str(exc))}")
            return EXIT_INVALID
        except (*DEVICE_ERRORS, HistoryError, ValueError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            return EXIT_INVALID
        control = allow_control
    else:
        path = scenario or Path(str(resources.files("openbms.scenario").joinpath("library", "serve.yaml")))
        runner = _live_runner(path, nvm_path, engine, speed, err)
        if runner is None:
            return EXIT_INVALID
        nvm = runner.nvm
        source = TwinSource(runner, speed)
        control = True
    problem = _cannot_listen(host, port)
    if problem is not None:
        err.print(f"[red]error:[/] cannot listen on {escape(host)}:{port}: {escape(problem)}")
        source.stop()
        if nvm is not None:
            nvm.close()
        return EXIT_INVALID
    publisher = None
    if mqtt_url is not None:
        from openbms.apps.mqtt import MqttError, for_source

        try:
            # Over MQTT only with --allow-control (the twin too): a broker is shared more widely.
            publisher = for_source(mqtt_url, source, mqtt_node, control=allow_control)
        except MqttError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            source.stop()
            if nvm is not None:
                nvm.close()
            return EXIT_INVALID
    # The token last: a run refused for its scenario, device, port or broker must not make a
    # token it never shows.
    try:
        token = load_or_create_token(token_file or default_token_path())
    except TokenError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        source.stop()
        if nvm is not None:
            nvm.close()
        return EXIT_INVALID
    if token.created:
        err.print(f"the control token (printed this once; kept in {token.path}, mode 0600):")
        print(token.value, flush=True)
    else:
        err.print(f"controls need the token kept in {token.path}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] listening on {host}, not only this computer: anyone who can reach it "
            "sees the battery; controls still need the token"
        )
    app_ = create_app(source, token.value, allow_control=control)
    config = uvicorn.Config(app_, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    source.start()
    if publisher is not None:
        publisher.start()
        err.print(f"publishing to {publisher.broker.host}:{publisher.broker.port} as openbms/{mqtt_node}")
    err.print(f"serving {source.kind} {source.label!r} on http://{host}:{port}/ ; Ctrl-C to stop", soft_wrap=True)
    try:
        server.run()
    except (OSError, SystemExit) as exc:
        err.print(f"[red]error:[/] cannot serve on {host}:{port}: {escape(str(exc))}")
        return EXIT_INVALID
    finally:
        if publisher is not None:
            publisher.stop()
        source.stop()
        if nvm is not None:
            nvm.close()
    return EXIT_OK


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (None: it can), asked before it starts,
    so a port in use or an unknown address is one sentence and not a server log."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"unknown address ({exc.strerror or exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


@app.command()
def serve(
    scenario: Annotated[
        Path | None, typer.Argument(help="The twin's scenario (default: a 16S LFP pack at rest, controllable).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Serve a real board instead, e.g. jbd:/dev/ttyUSB0.")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (default: this computer only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    speed: Annotated[float, typer.Option("--speed", help="The twin's speed, times real time.")] = 1.0,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Where the control token is kept (made on first run, 0600).")
    ] = None,
    allow_control: Annotated[
        bool, typer.Option("--allow-control", help="Allow control of a real board (the twin always allows it).")
    ] = False,
    profile: Annotated[
        str, typer.Option("--profile", help="A real board's chemistry profile (lfp, nmc, lto).")
    ] = "lfp",
    interval: Annotated[str, typer.Option("--interval", help="Time between polls of a real board.")] = "1s",
    record: Annotated[
        Path | None,
        typer.Option(
            "--record", help="A real board's history file (SQLite; default: one per device in ~/.local/share/openbms)."
        ),
    ] = None,
    keep: Annotated[str, typer.Option("--keep", help="How long a real board's history is kept.")] = "7d",
    mqtt: Annotated[str | None, typer.Option("--mqtt", help=MQTT_HELP)] = None,
    mqtt_node: Annotated[str, typer.Option("--mqtt-node", help=MQTT_NODE_HELP)] = "openbms",
    nvm: Annotated[Path | None, typer.Option("--nvm", help=NVM_HELP)] = None,
    engine: Annotated[str, typer.Option("--engine", help=ENGINE_HELP)] = DEFAULT_ENGINE,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """A live page of the pack (the twin, or a real board): cells, state, faults, events, the
    diagnosis, guided resets; controls need the token printed on the first run."""
    _exit(
        lambda: _serve_live(
            scenario,
            device,
            host,
            port,
            speed,
            token_file,
            allow_control,
            profile,
            interval,
            record,
            keep,
            nvm,
            engine,
            mqtt,
            mqtt_node,
        ),
        debug,
    )


def _settings(pairs: list[str], option: str) -> dict[str, object]:
    """``key=value`` pairs as profile overrides (the value read as YAML: 2.8, true, [1, 2])."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {pair!r}: use key=value, e.g. protections.cell_undervoltage.trip_v=2.8")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"{option} {pair!r}: the value is not a number, true/false or a list") from None
    return out


def _replay(
    logs: list[Path],
    profile: str,
    chemistry: str,
    capacity_ah: float,
    soc: float | None,
    settings: list[str],
    against: list[str],
    json_out: bool,
    workers: int = 1,
) -> int:
    from openbms.scenario.replay import Arm, PackSpec, ReplayError, replay_files

    console, err = _consoles(json_out)
    if not (capacity_ah > 0 and math.isfinite(capacity_ah)):
        raise UserError("--capacity-ah must be a positive number")
    if soc is not None and not 0 <= soc <= 1:
        raise UserError("--soc is a fraction from 0 to 1")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    arms = [Arm("settings", profile, _settings(settings, "--set"))]
    if against:
        arms.append(Arm("against", profile, {**arms[0].overrides, **_settings(against, "--against")}))
    try:
        outcomes = replay_files(logs, arms, PackSpec(chemistry, capacity_ah, soc), workers)
    except ReplayError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    for outcome in outcomes:
        if outcome.error is not None:
            err.print(f"[red]error:[/] {escape(outcome.error)}", soft_wrap=True)
        elif json_out:
            assert outcome.log is not None
            sys.stdout.write(json_line(_replay_doc(outcome.log, outcome.results)))
        else:
            assert outcome.log is not None
            _print_replay(console, outcome.log, outcome.results)
    if len(outcomes) > 1:
        if json_out:
            sys.stdout.write(json_line({"summary": _replay_summary(outcomes, arms)}))
        else:
            _print_replay_summary(console, outcomes, arms)
    if any(o.internal for o in outcomes):
        return EXIT_INTERNAL
    return EXIT_INVALID if any(o.error is not None for o in outcomes) else EXIT_OK


def _print_replay(console: Console, log: ReplayLog, results: list[ArmResult]) -> None:
    from rich.table import Table

    console.print(f"[bold]{escape(log.path)}[/]: {len(log.t_s)} rows", soft_wrap=True)
    for problem in (log.skipped + log.gaps)[:MAX_LISTED_PROBLEMS]:
        console.print(f"  [yellow]note:[/] {escape(problem)}", soft_wrap=True)
    heads = [r.arm.name + (" " + _overrides_text(r.arm.overrides) if r.arm.overrides else "") for r in results]
    table = Table("what", *heads)
    for fault in sorted({f for r in results for _, f in r.trips}):
        cells = [", ".join(f"t={t:,.0f} s" for t, f in r.trips if f == fault) or "—" for r in results]
        table.add_row(fault, *cells)
    for warning in sorted({w for r in results for _, w in r.warnings}):
        cells = [", ".join(f"t={t:,.0f} s" for t, w in r.warnings if w == warning) or "—" for r in results]
        table.add_row(f"warning: {warning}", *cells)
    table.add_row("balancing", *(_balancing_text(*r.balancing()) for r in results))
    table.add_row("final state", *(f"{r.final_state}, SOC {100 * r.final_soc:.0f} %" for r in results))
    console.print(table)


def _balancing_text(bled_s: float, cells: list[int]) -> str:
    if not cells:
        return "none"
    return f"{bled_s:,.0f} s, cells {', '.join(str(c) for c in cells)}"


def _arm_tally(outcomes: list[LogOutcome], arm: int) -> tuple[int, dict[str, int]]:
    """Over the logs replayed: how many tripped at all under arm ``arm``, and how many by each fault."""
    tripped = [{f for _, f in o.results[arm].trips} for o in outcomes if o.error is None]
    faults: set[str] = set().union(*tripped)
    return sum(bool(t) for t in tripped), {f: sum(f in t for t in tripped) for f in sorted(faults)}


def _replay_summary(outcomes: list[LogOutcome], arms: list[Arm]) -> dict[str, object]:
    failed = [o.path for o in outcomes if o.error is not None]
    per_arm = []
    for k, arm in enumerate(arms):
        tripped, by_fault = _arm_tally(outcomes, k)
        per_arm.append({"name": arm.name, "overrides": arm.overrides, "tripped": tripped, "by_fault": by_fault})
    return {"logs": len(outcomes), "replayed": len(outcomes) - len(failed), "failed": failed, "arms": per_arm}


def _print_replay_summary(console: Console, outcomes: list[LogOutcome], arms: list[Arm]) -> None:
    from rich.table import Table

    failed = sum(o.error is not None for o in outcomes)
    note = f", {failed} could not be replayed" if failed else ""
    console.print(f"[bold]summary[/]: {len(outcomes) - failed} of {len(outcomes)} logs replayed{note}", soft_wrap=True)
    tallies = [_arm_tally(outcomes, k) for k in range(len(arms))]
    table = Table(
        "logs that tripped", *(a.name + (" " + _overrides_text(a.overrides) if a.overrides else "") for a in arms)
    )
    table.add_row("any fault", *(str(tripped) for tripped, _ in tallies))
    for fault in sorted({f for _, by_fault in tallies for f in by_fault}):
        table.add_row(fault, *(str(by_fault.get(fault, 0)) for _, by_fault in tallies))
    console.print(table)


def _replay_doc(log: ReplayLog, results: list[ArmResult]) -> dict[str, object]:
    return {
        "log": log.path,
        "rows": int(len(log.t_s)),
        "skipped": log.skipped,
        "gaps": log.gaps,
        "arms": [
            {
                "name": r.arm.name,
                "overrides": r.arm.overrides,
                "trips": [{"t_s": t, "fault": f} for t, f in r.trips],
                "warnings": [{"t_s": t, "warning": w} for t, w in r.warnings],
                "balancing": dict(zip(("seconds", "cells"), r.balancing(), strict=True)),
                "final_state": r.final_state,
                "final_soc": round(r.final_soc, 4),
                "events": r.events,
            }
            for r in results
        ],
    }


def _overrides_text(overrides: dict[str, object]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ")"


@app.command()
def replay(
    logs: Annotated[list[Path], typer.Argument(help="Logged measurements (CSV; the format is in the README).")],
    profile: Annotated[str, typer.Option("--profile", help="The settings' profile: lfp, nmc or lto.")] = "lfp",
    chemistry: Annotated[str, typer.Option("--chemistry", help="The cells' chemistry (SOC from voltage).")] = "lfp",
    capacity_ah: Annotated[float, typer.Option("--capacity-ah", help="The pack's rated capacity.")] = 100.0,
    soc: Annotated[float | None, typer.Option("--soc", help="The SOC at the first row (default: unknown).")] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", help="A setting to replay with, key=value (repeatable).")
    ] = None,
    against: Annotated[
        list[str] | None, typer.Option("--against", help="A second settings set side by side, key=value (repeatable).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON document per log (and a summary line for several logs).")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes to replay in (results do not depend on it).")
    ] = 1,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """What these settings would have done on real packs' logged measurements: the brain alone,
    fed each logged row (trips, warnings, final state and SOC), side by side with --against. Logs
    that share a clock are replayed together on one brain; a log that cannot be read is reported
    and the others replayed (exit code 2)."""
    _exit(
        lambda: _replay(logs, profile, chemistry, capacity_ah, soc, settings or [], against or [], json_out, workers),
        debug,
    )


fleet_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Fleet campaigns: many packs, settings as arms."
)
app.add_typer(fleet_app, name="fleet")


def _fleet_run(campaign_path: Path, workers: int, scheduler: str | None, out: Path, engine: str) -> int:
    from openbms.apps.fleet import CampaignError, failed, load_campaign, run_campaign, write_results

    err = Console(stderr=True, highlight=False)
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if scheduler is not None and workers != 1:
        raise UserError("give --workers or --scheduler, not both")
    problem = _out_problem(out)
    if problem is not None:
        raise UserError(f"--out {out} {problem}")
    try:
        campaign, base = load_campaign(campaign_path)
    except CampaignError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    from openbms.scenario.output import parquet_available

    if not parquet_available():  # checked before the packs run, not after
        raise UserError("fleet results are Parquet: pip install 'openbms[fleet]'")
    engine = _ready_engine(engine, err)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        err.print(f"{done}/{total} batches, {time.perf_counter() - started:.0f} s")

    try:
        rows = run_campaign(campaign, base, workers=workers, scheduler=scheduler, engine=engine, progress=progress)
        parquet, report, figure = write_results(rows, out, campaign)
    except CampaignError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    wall = time.perf_counter() - started
    err.print(
        f"{len(rows)} pack runs ({campaign.packs} packs × {len(campaign.arms)} arms) in {wall:.1f} s, "
        f"{len(rows) / wall:.1f} pack runs/s; {parquet}, {report} and {figure}"
    )
    print(report.read_text(encoding="utf-8"))
    broken = [r for r in rows if failed(r)]
    if broken:
        err.print(
            f"[red]error:[/] {len(broken)} of {len(rows)} pack runs failed (a bug: please report it); their rows "
            f"in {parquet} say why, and the report counts only the others",
            soft_wrap=True,
        )
        return EXIT_INTERNAL
    return EXIT_OK


@fleet_app.command("run")
def fleet_run(
    campaign: Annotated[Path, typer.Argument(help="The campaign file (YAML; the format is in the README).")],
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 1,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="A Dask scheduler (tcp://HOST:8786) instead of local workers.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where results.parquet and report.md go.")] = Path("fleet-results"),
    engine: Annotated[str, typer.Option("--engine", help=ENGINE_HELP)] = DEFAULT_ENGINE,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Run every pack of a campaign under every arm: trips, nuisance trips, missed or late
    protections, final states and advice per pack (Parquet), and the arms compared (markdown)."""
    _exit(lambda: _fleet_run(campaign, workers, scheduler, out, engine), debug)


@app.command()
def version() -> None:
    """Print the openbms version."""
    print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

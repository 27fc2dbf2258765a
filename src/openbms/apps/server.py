"""``openbms serve``: the live page, its read-only API and websocket, and the token-guarded controls.

Reading needs nothing; every control (an action on the twin, a step of a guided procedure) needs
``Authorization: Bearer <token>``: missing → 401, wrong → 403, too many wrong from one origin →
429 with ``Retry-After``, before the token is even compared. Every control attempt, refused ones
included, goes to the twin's event log (``control_write``, protocol ``http``) with its origin.

Routes (JSON unless said): ``/`` the page; ``/api/info``; ``/api/reading``; ``/api/history``;
``/api/events`` (paged, filtered by kind and time); ``/api/diagnosis``; ``/api/limits``;
``/ws`` (a websocket that sends each new reading, ≥ 5 a second on the twin);
``POST /api/actions`` (one timeline step); ``/api/procedures/{name}`` and its ``start`` /
``next`` (POST).
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from openbms.apps.auth import FailureBrake, token_matches
from openbms.apps.live import ActionError, LiveSource
from openbms.apps.wizard import PROCEDURES, Facts, Walks

log = logging.getLogger("openbms.serve")
WS_POLL_S = 0.02  # how often a websocket looks for a new reading
MAX_PAGE = 1000
MAX_STEP_CHARS = 300  # of an action as the event log keeps it


def _static_dir() -> str:
    return str(resources.files("openbms.apps").joinpath("static"))


def _metrics_registry(source: LiveSource) -> Any:
    try:
        from openbms.apps.metrics import registry_for
    except ImportError:
        return None
    return registry_for(source)


def create_app(source: LiveSource, token: str, allow_control: bool = True) -> FastAPI:
    """The app for ``source``. ``allow_control`` False refuses every control (a real board
    without ``--allow-control``), still logged."""
    app = FastAPI(title="openbms", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    brake = FailureBrake()
    walks = Walks()

    def origin(request: Request) -> str:
        return request.client.host if request.client is not None else "unknown"

    def guard(request: Request, what: str, fields: dict[str, Any]) -> None:
        """Let a control through, or refuse it (logged either way by the caller on success)."""
        who = origin(request)
        wait_s = brake.retry_after_s(who)
        if wait_s > 0:
            source.log_control(what, False, who, "too many wrong tokens", fields)
            raise HTTPException(
                429, "too many wrong tokens from this address; try again later", {"Retry-After": f"{wait_s:.0f}"}
            )
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not given:
            source.log_control(what, False, who, "no token", fields)
            raise HTTPException(
                401, "control needs the token: Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"}
            )
        if not token_matches(given, token):
            brake.failed(who)
            source.log_control(what, False, who, "wrong token", fields)
            raise HTTPException(403, "wrong token")
        if not allow_control:
            source.log_control(what, False, who, "control not allowed", fields)
            raise HTTPException(403, "control of this board is not allowed (start serve with --allow-control)")

    @app.get("/", response_class=HTMLResponse)
    def page() -> Response:
        html = resources.files("openbms.apps").joinpath("static", "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "source": source.kind,
            "label": source.label,
            "control": allow_control,
            "procedures": list(PROCEDURES),
        }

    @app.get("/api/reading")
    def reading() -> dict[str, Any]:
        sample = source.latest()
        return {"seq": sample.seq, "reading": sample.doc}

    @app.get("/api/history")
    def history(since_s: Annotated[float | None, Query()] = None) -> dict[str, Any]:
        return source.history(since_s)

    @app.get("/api/events")
    def events(
        kind: Annotated[list[str] | None, Query()] = None,
        since_s: Annotated[float | None, Query()] = None,
        until_s: Annotated[float | None, Query()] = None,
        offset: Annotated[int, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        """Oldest first; a negative ``offset`` counts from the end (``offset=-50``: the last 50)."""
        total, rows = source.events(kind or [], since_s, until_s, offset, limit)
        return {"total": total, "offset": offset, "limit": limit, "events": rows}

    @app.get("/api/diagnosis")
    def diagnosis() -> dict[str, Any]:
        return source.diagnosis()

    @app.get("/api/limits")
    def limits() -> dict[str, Any]:
        return source.limits()

    @app.post("/api/actions")
    def act(request: Request, step: Annotated[Any, Body()] = None) -> dict[str, Any]:
        # The black box keeps flat fields: the step as the text it was sent as (bounded).
        fields = {"step": json.dumps(step, separators=(",", ":"), default=str)[:MAX_STEP_CHARS]}
        what = str(next(iter(step))) if isinstance(step, dict) and len(step) == 1 else "action"
        guard(request, what, fields)
        try:
            source.act(step)
        except ActionError as err:
            source.log_control(what, False, origin(request), str(err), fields)
            raise HTTPException(400, str(err)) from None
        source.log_control(what, True, origin(request), "", fields)
        sample = source.latest()
        return {"ok": True, "seq": sample.seq, "reading": sample.doc}

    def facts(name: str) -> Facts:
        walk = walks.get(name)
        clock = source.clock_s()
        waited = 0.0 if walk is None else clock - walk.offered_at_s
        return Facts(source.latest().doc, clock, waited)

    def known(name: str) -> None:
        if name not in PROCEDURES:
            raise HTTPException(404, f"no procedure {name!r}; there are {', '.join(PROCEDURES)}")

    @app.get("/api/procedures/{name}")
    def procedure(name: str) -> dict[str, Any]:
        known(name)
        with walks.lock:
            walk = walks.get(name)
            if walk is None:
                return {"procedure": name, "started": False}
            return {"started": True, **walk.status(facts(name))}

    @app.post("/api/procedures/{name}/start")
    def start(request: Request, name: str) -> dict[str, Any]:
        known(name)
        guard(request, "procedure", {"procedure": name, "step": "start"})
        with walks.lock:
            walk = walks.start(name, source.hold_up_s(), source.clock_s())
            source.log_control("procedure", True, origin(request), "started", {"procedure": name})
            return {"started": True, **walk.status(facts(name))}

    @app.post("/api/procedures/{name}/next")
    def next_step(request: Request, name: str) -> JSONResponse:
        known(name)
        guard(request, "procedure", {"procedure": name, "step": "next"})
        with walks.lock:
            walk = walks.get(name)
            if walk is None:
                raise HTTPException(409, f"the procedure {name!r} has not been started")
            index = walk.index
            why = walk.next(facts(name))
            fields = {"procedure": name, "step_index": index + 1}
            if why is not None:
                source.log_control("procedure", False, origin(request), why, fields)
                return JSONResponse({"started": True, "refused": why, **walk.status(facts(name))}, status_code=409)
            result = "finished: the test passed" if walk.finished else "step done"
            source.log_control("procedure", True, origin(request), result, fields)
            return JSONResponse({"started": True, "refused": None, **walk.status(facts(name))})

    metrics = _metrics_registry(source)

    @app.get("/metrics")
    def prometheus() -> Response:
        if metrics is None:
            raise HTTPException(404, "metrics need prometheus-client: pip install '.[serve]'")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        seq = -1
        try:
            while True:
                sample = source.latest()
                if sample.seq != seq:
                    seq = sample.seq
                    await ws.send_json({"seq": sample.seq, "at_unix": sample.at_unix, "reading": sample.doc})
                await asyncio.sleep(WS_POLL_S)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            return

    return app

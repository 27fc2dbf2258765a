"""Applications built on the layers below: ``openbms serve`` (a live dashboard and control API).

The layer sits above ``devices`` and ``diagnose`` and below the CLI; its web dependencies
(FastAPI, uvicorn) are the ``serve`` extra, imported only when a server is started.
"""

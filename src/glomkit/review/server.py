"""The review web app: a Starlette app over one :class:`ReviewSession`, served by uvicorn.

It serves only what the page needs: its own static files (inside the package), the slide's tiles
(by integer level, column and row), the patch PNG of a glomerulus (by id, checked to lie in the
output folder), the reviewed set, and one POST route that applies a validated operation. Request
bodies are capped; POSTs must be JSON; the Host header must name the address served or a name
allowed with ``--allow-host`` (no DNS rebinding from a web page); a POST whose ``Origin`` is
another site is refused (no cross-site request forgery).
"""

from __future__ import annotations

import json
import re
import socket
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from glomkit import GlomkitError
from glomkit.review.session import ReviewInputError, ReviewSession
from glomkit.review.tiles import DeepZoomTiles

MAX_BODY_BYTES = 16 * 1024  # one operation is well under 1 KiB
LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
WILDCARD_ADDRESSES = ("0.0.0.0", "::")
_HOST_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_.:-]+")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
}


def static_dir() -> Path:
    return Path(str(resources.files("glomkit.review") / "static"))


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge
        except ValueError:
            raise BodyTooLarge from None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def allowed_hosts(host: str, allow: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The Host-header names a server on ``host`` answers: this machine's local names, ``host``
    itself (unless it is a wildcard address such as 0.0.0.0) and each ``--allow-host`` name.
    ``*`` alone is refused: the check always stays on."""
    names = list(LOCAL_HOSTS)
    bare = host.strip("[]")
    given = [] if bare in WILDCARD_ADDRESSES else [bare]
    for name in allow:
        n = name.strip().strip("[]")
        if not _HOST_NAME.fullmatch(n) or n.startswith("*:"):
            raise GlomkitError(
                f"--allow-host {name!r}: not a host name or address (a leading '*.' allows subdomains; "
                "'*' alone would turn the Host check off)"
            )
        given.append(n)
    for n in given:  # Host headers bracket IPv6 literals
        for form in [n, f"[{n}]"] if ":" in n else [n.lower()]:
            if form not in names:
                names.append(form)
    return names


def same_origin(request: Request) -> bool:
    """False for a request a browser sent from another site: its ``Origin`` names another host,
    port or scheme than the request's own (or is ``null``); without an ``Origin``, when
    ``Sec-Fetch-Site`` says cross-site. Clients that send neither (curl, scripts) pass."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    try:
        o = urlsplit(origin.strip())
        h = urlsplit("//" + request.headers.get("host", ""))
        scheme = request.url.scheme
        default = {"http": 80, "https": 443}
        mine = (scheme, (h.hostname or "").lower(), h.port or default.get(scheme))
        theirs = (o.scheme, (o.hostname or "").lower(), o.port or default.get(o.scheme))
    except ValueError:  # a malformed port
        return False
    return bool(o.hostname) and theirs == mine


def create_app(
    session: ReviewSession, allowed_hosts: list[str] | None = None, tiles: DeepZoomTiles | None = None
) -> Starlette:
    """The app for one session; ``allowed_hosts`` defaults to the local names."""
    from glomkit.slide.reader import Slide

    if tiles is None:
        tiles = DeepZoomTiles(Slide(session.slide_path, mpp=session.mpp))
    static = static_dir()

    def headers(resp: Response) -> Response:
        resp.headers.update(SECURITY_HEADERS)
        return resp

    async def index(request: Request) -> Response:
        return headers(HTMLResponse((static / "index.html").read_text(encoding="utf-8")))

    async def slide_info(request: Request) -> Response:
        return headers(
            JSONResponse(
                {
                    "stem": session.stem,
                    "width": session.width,
                    "height": session.height,
                    "mpp": session.mpp,
                    "tile_size": tiles.tile_size,
                    "max_level": tiles.max_level,
                    "scheme": session.scheme.to_dict(),
                    "model_scheme": session.model_scheme.name,
                    "reviewer": session.reviewer,
                    "resumed": session.resumed,
                    "files": {
                        "geojson": session.geojson_path.relative_to(session.out_dir).as_posix(),
                        "xml": session.xml_path.relative_to(session.out_dir).as_posix(),
                    },
                }
            )
        )

    async def items(request: Request) -> Response:
        return headers(
            JSONResponse({"items": [it.to_json() for it in session.item_list()], "counts": session.counts()})
        )

    def tile(request: Request) -> Response:  # sync: runs in the thread pool (slide reads block)
        p = request.path_params
        try:
            data = tiles.tile(p["level"], p["col"], p["row"])
        except KeyError:
            return headers(Response("no such tile", status_code=404, media_type="text/plain"))
        resp = Response(data, media_type="image/jpeg")
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return headers(resp)

    def patch(request: Request) -> Response:
        item = session.items.get(request.path_params["id"])
        if item is None or not item.patch:
            return headers(Response("no patch", status_code=404, media_type="text/plain"))
        path = (session.out_dir / item.patch).resolve()
        if not path.is_relative_to(session.out_dir) or path.suffix.lower() != ".png" or not path.is_file():
            return headers(Response("no patch", status_code=404, media_type="text/plain"))
        return headers(FileResponse(path, media_type="image/png"))

    async def operation(request: Request) -> Response:
        if not same_origin(request):
            return headers(JSONResponse({"error": "refused: a request from another site"}, status_code=403))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return headers(JSONResponse({"error": "send application/json"}, status_code=415))
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return headers(JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413))
        try:
            op: Any = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            return headers(JSONResponse({"error": f"not valid JSON ({exc})"}, status_code=400))
        except RecursionError:  # thousands of nested arrays: no operation looks like that
            return headers(JSONResponse({"error": "not an operation (nested too deeply)"}, status_code=400))
        try:
            from starlette.concurrency import run_in_threadpool

            out = await run_in_threadpool(session.apply, op)
        except ReviewInputError as exc:  # 400, or 404 for an id that is gone (deleted meanwhile)
            return headers(JSONResponse({"error": str(exc)}, status_code=exc.status_code))
        return headers(JSONResponse(out))

    routes = [
        Route("/", index),
        Route("/api/slide", slide_info),
        Route("/api/items", items),
        Route("/api/op", operation, methods=["POST"]),
        Route("/tiles/{level:int}/{col:int}_{row:int}.jpg", tile),
        Route("/patch/{id:int}.png", patch),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOCAL_HOSTS)]
    return Starlette(routes=routes, middleware=middleware)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise GlomkitError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def make_server(app: Starlette, log_level: str = "warning"):
    """A uvicorn server for ``app`` (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)

"""The web page of ``animegan-serve``: a small Flask app around a trained generator. One page
(a grid of faces, a "new faces" button, a seed field, a slider that walks between two faces)
over these endpoints:

- ``GET /api/faces?seed=S&n=N&psi=P`` -> PNG grid of N faces (1..64) drawn from seed S;
- ``GET /api/walk?a=S1&b=S2&t=T&psi=P`` -> PNG of the face at T in [0, 1] on the spherical path
  from seed S1's face to seed S2's;

``psi`` (optional, in (0, 10]) truncates the latents (BigGAN's trick); without it, none.
- ``GET /api/info`` -> JSON about the checkpoint.

Bad parameters get HTTP 400 with a JSON ``{"error": ...}``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from flask import Flask, Response, jsonify, request

from ..networks.faces import grid, latents, png_bytes, render, slerp, to_pil

MAX_GRID = 64
MAX_SEED = 2**63 - 1
PAGE = (Path(__file__).parent / "page.html").read_text()


class BadRequest(ValueError):
    """A query parameter is missing or out of range."""


def _param(name: str, kind: type, default, lo, hi):
    """Query parameter ``name`` as ``kind`` (int or float) within [lo, hi]; ``default`` None
    makes it required. Anything else is a :class:`BadRequest` naming the parameter."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"missing parameter {name}")
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise BadRequest(f"{name} must be {what}, got {raw!r}") from None
    if not lo <= value <= hi:
        span = f"{lo}..{hi}" if kind is int else f"[{lo}, {hi}]"
        raise BadRequest(f"{name} must be in {span}, got {value}")
    return value


def _truncation() -> float | None:
    """``psi`` in (0, 10], or absent/``none`` for the plain normal."""
    if request.args.get("psi", "none") == "none":
        return None
    return _param("psi", float, None, 1e-3, 10.0)


def create_app(netG: torch.nn.Module, info: dict) -> Flask:
    """The web app around a generator (in eval mode)."""
    app = Flask(__name__)
    lock = threading.Lock()  # one forward pass at a time: the dev server is threaded

    def png(image) -> Response:
        return Response(png_bytes(image), mimetype="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.errorhandler(BadRequest)
    def bad_request(e: BadRequest):
        return jsonify(error=str(e)), 400

    @app.get("/")
    def page():
        return Response(PAGE, mimetype="text/html")

    @app.get("/api/info")
    def api_info():
        return jsonify(info)

    @app.get("/api/faces")
    def api_faces():
        seed = _param("seed", int, 0, 0, MAX_SEED)
        n = _param("n", int, 16, 1, MAX_GRID)
        psi = _truncation()
        with lock:
            images = render(netG, latents(n, netG.nz, seed, truncation=psi))
        return png(grid(images))

    @app.get("/api/walk")
    def api_walk():
        a = _param("a", int, None, 0, MAX_SEED)
        b = _param("b", int, None, 0, MAX_SEED)
        t = _param("t", float, 0.5, 0.0, 1.0)
        psi = _truncation()
        z = slerp(latents(1, netG.nz, a, truncation=psi), latents(1, netG.nz, b, truncation=psi), t)
        with lock:
            face = render(netG, z)[0]
        return png(to_pil(face).resize((256, 256), resample=0))

    return app

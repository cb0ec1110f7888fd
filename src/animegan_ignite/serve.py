"""``animegan-serve --checkpoint PATH`` (``python -m animegan_ignite.serve``): a local web page
for a trained generator (webapp.py), bound to 127.0.0.1 unless ``--host`` says otherwise."""

from __future__ import annotations

import sys

from .config.rules import Rule, check_flag
from .errors import OneLineErrorParser, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: serve(argv))


def serve(argv: list[str] | None) -> None:
    p = OneLineErrorParser(prog="animegan-serve",
                           description="Serve a trained generator on a local web page.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (latest)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                   help="the generator's EMA weights or its trained (raw) ones; auto = EMA when "
                   "the run kept one (default)")
    args = p.parse_args(argv)
    check_flag("--port", args.port, Rule(int, lo=0, hi=65535), " (0: any free port)")
    # imported here: --help and flag errors answer before torch loads
    from .device import resolve_device
    from .runs.checkpoints import architecture_of, load_checkpoint, load_generator, resolve_checkpoint
    from .use.webapp import create_app

    path = resolve_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(path)
    netG = load_generator(ckpt, resolve_device(args.device), args.weights)
    info = {"checkpoint": str(path), "iteration": ckpt.get("trainer", {}).get("iteration"),
            "weights": "ema" if args.weights != "raw" and "ema" in ckpt else "raw",
            **architecture_of(ckpt).as_dict()}
    print(f"serving {path} on http://{args.host}:{args.port}/", flush=True)
    create_app(netG, info).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    sys.exit(main())

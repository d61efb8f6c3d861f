"""python -m serve [--host H] [--port P] [--params FILE]: serve the champion over HTTP.

Run from the repository root (the champion is read from models/champion.json and
models/champion/onnx/); everything else is params.yaml `serve:` (docs/serving.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from stages.common import PARAMS_FILE, get_logger, run_cli

log = get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="overrides serve.host")
    parser.add_argument("--port", type=int, help="overrides serve.port")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file")
    args = parser.parse_args(argv)

    import uvicorn

    from serve.app import create_app
    from serve.params import load_serve_params

    flags = {"host": args.host or None, "port": args.port}
    params = load_serve_params(args.params, {k: v for k, v in flags.items() if v is not None})
    app = create_app(params)
    log.info("serving on http://%s:%d (precision %s, max_batch %d, max_wait_ms %g)",
             params.host, params.port, params.precision, params.max_batch, params.max_wait_ms)
    config = uvicorn.Config(app, host=params.host, port=params.port, access_log=False,
                            log_level="info", lifespan="on",
                            timeout_graceful_shutdown=int(params.shutdown_timeout_s) or None)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal: exit 0 then (drained, log
    # written), and let atexit handlers run, rather than die by the signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    uvicorn.Server(config).run()


if __name__ == "__main__":
    run_cli(main)

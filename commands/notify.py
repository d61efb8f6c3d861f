"""notify: tell Prefect that new data arrived, so the `on-data-arrived` deployment retrains.

    python -m commands.notify                       # emit retrainer.data.arrived once
    python -m commands.notify --watch [--interval 60]  # poll ingest.source and ingest.imports;
                                                       # emit when they change

Call the first form at the end of whatever lands new texts or labels (an export job, a labelling
tool's webhook, cron); use ``--watch`` when nothing can call you. The event's resource is
``retrainer.dataset.<checkout name>`` and its payload the ``ingest.source`` paths with their
fingerprints, so the run (and its artifacts) record which data it was triggered by. Needs
PREFECT_API_URL pointing at the server the deployments live on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from stages.common import StageError, get_logger, read_params_file, run_cli
from stages.io import sha256_file

log = get_logger(__name__)

EVENT = "retrainer.data.arrived"


def sources(params_file: Path = Path("params.yaml")) -> dict[str, str]:
    """``ingest.source`` as {"texts": ..., "labels": ...} (local paths or fsspec URLs), and the
    ``ingest.imports`` directory of label batches as "imports"."""
    ingest = read_params_file(params_file).get("ingest") or {}
    source = ingest.get("source") or {}
    if not isinstance(source, dict) or not source:
        raise StageError("ingest.source is missing", where=f"{params_file}:ingest.source",
                         fix="set ingest.source.texts and ingest.source.labels")
    imports = ({"imports": str(ingest["imports"])} if ingest.get("imports")
               and Path(str(ingest["imports"])).is_dir() else {})
    return {str(k): str(v) for k, v in source.items()} | imports


def fingerprint(source: str) -> str:
    """sha256 of a local file (of a directory: of its files' names and hashes); for a URL, what
    the store says about it (etag, size, mtime)."""
    if "://" not in source and Path(source).is_dir():
        import hashlib

        listing = "\n".join(f"{p.name} {sha256_file(p)}" for p in sorted(Path(source).iterdir())
                            if p.is_file())
        return hashlib.sha256(listing.encode("utf-8")).hexdigest()
    if "://" not in source:
        return sha256_file(source) if Path(source).is_file() else "missing"
    import fsspec

    fs, path = fsspec.core.url_to_fs(source)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return "missing"
    keys = ("ETag", "etag", "md5", "size", "mtime", "LastModified", "last_modified")
    return ";".join(f"{k}={info[k]}" for k in keys if k in info)


def resource_id(repo: Path) -> str:
    return f"retrainer.dataset.{repo.resolve().name}"


def emit(payload: dict[str, Any], repo: Path) -> str:
    """Send the event to the server in PREFECT_API_URL and wait until it is delivered."""
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise StageError("no Prefect server to notify: PREFECT_API_URL is not set",
                         fix="export PREFECT_API_URL=http://127.0.0.1:4200/api "
                             "(or `prefect config set PREFECT_API_URL=...`)")
    event = Event(event=EVENT, resource={"prefect.resource.id": resource_id(repo),
                                         "prefect.resource.name": repo.resolve().name},
                  payload=payload)

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    try:
        asyncio.run(send())
    except OSError as exc:
        raise StageError(f"could not reach the Prefect server: {exc}",
                         where=str(PREFECT_API_URL.value()),
                         fix="start it (`prefect server start`) or fix PREFECT_API_URL") from None
    return str(event.id)


def snapshot(params_file: Path) -> dict[str, dict[str, str]]:
    return {name: {"source": src, "fingerprint": fingerprint(src)}
            for name, src in sources(params_file).items()}


def watch(repo: Path, interval: float, max_events: int | None = None) -> None:
    """Poll ``ingest.source`` every ``interval`` seconds; emit once per change (not at start)."""
    params_file = repo / "params.yaml"
    last = snapshot(params_file)
    log.info("watching %s every %.0f s", ", ".join(s["source"] for s in last.values()), interval)
    sent = 0
    while max_events is None or sent < max_events:
        time.sleep(interval)
        now = snapshot(params_file)
        if now != last and all(s["fingerprint"] != "missing" for s in now.values()):
            changed = sorted(k for k in now if now[k] != last.get(k))
            log.info("changed: %s; emitting %s (event %s)", ", ".join(changed), EVENT,
                     emit({"sources": now, "changed": changed}, repo))
            last, sent = now, sent + 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m commands.notify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-dir", default=".", help="the checkout (its params.yaml)")
    parser.add_argument("--watch", action="store_true", help="poll ingest.source for changes")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
    args = parser.parse_args()
    repo = Path(args.repo_dir)
    if args.watch:
        watch(repo, args.interval)
        return
    now = snapshot(repo / "params.yaml")
    log.info("emitted %s for %s (event %s)", EVENT, resource_id(repo),
             emit({"sources": now, "changed": sorted(now)}, repo))


if __name__ == "__main__":
    run_cli(main)

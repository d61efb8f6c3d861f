"""The command line of a DVC stage module: ``python -m stages.<name> --help`` says what the stage
reads, writes and which params section it uses (from dvc.yaml, the one place that declares it),
and an unknown argument is refused with a usage line before the stage touches anything.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

DVC_FILE = Path("dvc.yaml")


def _declared(entries: list[Any] | None) -> list[str]:
    """Paths of a dvc.yaml deps/outs/metrics/plots list (an entry is a path or {path: options})."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def dvc_stages_of(module: str, dvc_file: Path = DVC_FILE) -> dict[str, dict[str, Any]]:
    """The dvc.yaml stages whose command runs ``python -m <module>``, by name."""
    import yaml

    if not dvc_file.is_file():  # run outside the project root: the package's own dvc.yaml
        dvc_file = Path(__file__).resolve().parents[1] / DVC_FILE
    try:
        stages = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {name: spec for name, spec in stages.items()
            if str(spec.get("cmd", "")).split()[:3] == ["python", "-m", module]}


def _with_params(path: str) -> str:
    """``${ingest.source.texts}`` shown with the value params.yaml gives it, where it has one."""
    match = re.fullmatch(r"\$\{([\w.]+)\}", path)
    if not match:
        return path
    from stages.common import read_params_file

    try:
        value: Any = read_params_file()
        for key in match.group(1).split("."):
            value = value[key]
    except Exception:  # --help must answer even when params.yaml is broken
        return path
    return f"{value} ({match.group(1)})"


def describe(name: str, spec: dict[str, Any]) -> str:
    """Reads, writes and params of one stage, for --help (code files left out of 'reads')."""
    reads = [_with_params(p) for p in _declared(spec.get("deps")) if not p.endswith(".py")]
    writes = [p for key in ("outs", "metrics", "plots") for p in _declared(spec.get(key))]
    params = [p if isinstance(p, str) else next(iter(p)) for p in spec.get("params") or []]
    return (f"DVC stage `{name}` (`{spec['cmd']}`; run it with `dvc repro {name}`):\n"
            f"  reads:  {', '.join(reads) or '-'}\n"
            f"  writes: {', '.join(writes) or '-'}\n"
            f"  params: {', '.join(_param_phrase(p) for p in params) or '-'}")


def stage_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help is the module's summary plus its dvc.yaml declarations."""
    summary = (doc or "").strip().split("\n\n", 1)[0]
    stages = dvc_stages_of(module)
    epilog = "\n\n".join(describe(name, spec) for name, spec in stages.items())
    if stages:
        epilog += ("\n\nRun stages through `dvc repro`: run by hand, a stage rewrites its outputs "
                   "without updating dvc.lock.")
    return argparse.ArgumentParser(prog=f"python -m {module}", description=summary, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def run_stage(main: Any, module: str, doc: str | None, argv: list[str] | None = None) -> None:
    """``python -m stages.<name>`` for a stage without options of its own: answer --help, refuse
    unknown arguments (exit 2 with a usage line), then run ``main`` under :func:`run_cli`."""
    from stages.common import run_cli

    stage_parser(module, doc).parse_args(sys.argv[1:] if argv is None else argv)
    run_cli(main)


def _param_phrase(param: str) -> str:
    """``train`` -> the `train:` section of params.yaml; ``report.show_texts`` -> that one key."""
    return f"`{param}` in params.yaml" if "." in param else f"the `{param}:` section of params.yaml"

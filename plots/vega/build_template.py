"""Build plots/vega/offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

`dvc plots show` writes an HTML page that loads these three scripts from a CDN, so offline (an
air-gapped machine, a CI artifact opened later) it shows nothing. `.dvc/config` points
`plots.html_template` at the page this script writes, which has the same placeholders as DVC's
default page (dvc_render.html.PAGE_HTML) and the scripts inlined, at the versions DVC 3.67 asks
for. Rebuild it from the npm registry (ordinary client, no network at view time):

    cd /tmp && npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    for f in vega*.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
    python plots/vega/build_template.py /tmp    # from the repository root

The three packages are BSD-3-Clause; their licences are kept beside the page (LICENSE-*).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PACKAGES = (("vega", "5.20.2", "vega.min.js"), ("vega-lite", "5.2.0", "vega-lite.min.js"),
            ("vega-embed", "6.18.2", "vega-embed.min.js"))
HERE = Path(__file__).resolve().parent

PAGE = """<!DOCTYPE html>
<html>
<head>
    <!-- DVC plots page with its scripts inlined, so it renders offline (plots/vega/build_template.py) -->
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
%s
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(npm_dir: Path) -> None:
    scripts = []
    for name, version, build in PACKAGES:
        pkg = npm_dir / f"{name}-{version}" / "package"
        js = (pkg / "build" / build).read_text(encoding="utf-8")
        if "</script" in js.lower() or "{plot_divs}" in js or "{scripts}" in js:
            raise SystemExit(f"{build} cannot be inlined as is (it holds a closing tag or a "
                             "DVC placeholder)")
        scripts.append(f"    <!-- {name} {version} (BSD-3-Clause, LICENSE-{name}) -->\n"
                       f"    <script>{js}</script>")
        shutil.copyfile(pkg / "LICENSE", HERE / f"LICENSE-{name}")
    (HERE / "offline.html").write_text(PAGE % "\n".join(scripts), encoding="utf-8")
    print(f"wrote {HERE / 'offline.html'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp"))

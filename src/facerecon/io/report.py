"""Offline HTML report: photo, overlay and an interactive 3D view per face.

``report.html`` opens from ``file://`` without a server: the viewer is a classic script
(``viewer.js``, three.js bundled, copied next to the report) and every GLB is embedded as
base64 in the page. Photos and overlays are linked by relative path.

The page marks its state in the DOM so that tests (and users) can tell it worked: each mounted
viewer element gets ``data-viewer-ready="1"`` (or ``data-viewer-error="<message>"``), and
``<html data-js-errors="N">`` counts uncaught script errors, listed in ``#js-errors``.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from facerecon.fileio import atomic_write_bytes, atomic_write_text
from facerecon.io.paths import ensure_writable
from facerecon.io.results import to_jsonable

VIEWER_ASSET = "viewer.js"
MAX_LIVE_VIEWERS = 8  # browsers keep ~16 WebGL contexts; the page unloads off-screen views


@dataclass
class ReportEntry:
    """One input of the report; paths are files on disk (absolute or relative to the CWD)."""

    name: str
    photo_path: str | None
    overlay_path: str | None
    glb_path: str | None
    status: Literal["ok", "failed"]
    message: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    confidence: float | None = None


def viewer_asset_path() -> Path:
    """Path of the bundled ``viewer.js`` shipped in ``facerecon/io/assets``."""
    return Path(str(resources.files("facerecon.io").joinpath("assets", VIEWER_ASSET)))


def _href(path: str | os.PathLike, out_dir: Path) -> str:
    """URL of ``path`` relative to ``out_dir`` (a file:// URI when no relative path exists)."""
    target = Path(path).resolve()
    try:
        rel = os.path.relpath(target, out_dir.resolve())
    except ValueError:  # different drive on Windows
        return target.as_uri()
    return quote(Path(rel).as_posix())


def _format_value(value: Any) -> str:
    value = to_jsonable(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _meta_table(entry: ReportEntry) -> str:
    rows = [(k, _format_value(v)) for k, v in entry.meta.items()]
    if entry.confidence is not None:
        rows.append(("confidence", f"{entry.confidence:.3f}"))
    if not rows:
        return ""
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    return f'<table class="meta">{cells}</table>'


def _figure(content: str, caption: str) -> str:
    return f"<figure>{content}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _image(path: str | None, out_dir: Path, alt: str) -> str:
    if path is None:
        return _figure('<div class="missing">none</div>', alt)
    src = html.escape(_href(path, out_dir))
    return _figure(f'<img src="{src}" alt="{html.escape(alt)}" loading="lazy">', alt)


def _entry_html(index: int, entry: ReportEntry, out_dir: Path) -> str:
    parts = [
        _image(entry.photo_path, out_dir, "photo"),
        _image(entry.overlay_path, out_dir, "overlay"),
    ]
    glb_script = ""
    if entry.glb_path is not None and Path(entry.glb_path).is_file():
        data = base64.b64encode(Path(entry.glb_path).read_bytes()).decode("ascii")
        glb_id = f"glb-{index}"
        glb_script = f'<script type="text/plain" id="{glb_id}">{data}</script>'
        viewer = f'<div class="viewer" data-glb="{glb_id}" title="{html.escape(entry.name)}"></div>'
        parts.append(_figure(viewer, "3D: drag to rotate, wheel to zoom, right-drag to pan"))
    else:
        parts.append(_figure('<div class="missing">no mesh</div>', "3D"))
    message = f'<p class="message">{html.escape(entry.message)}</p>' if entry.message else ""
    return (
        f'<section class="entry" id="entry-{index}"><h2>{html.escape(entry.name)}</h2>'
        f'<div class="row">{"".join(parts)}</div>{message}{_meta_table(entry)}{glb_script}'
        "</section>"
    )


def _failed_html(entries: list[ReportEntry]) -> str:
    if not entries:
        return ""
    items = "".join(
        f'<li><span class="name">{html.escape(e.name)}</span>: '
        f'<span class="error">{html.escape(e.message or "failed")}</span></li>'
        for e in entries
    )
    return f'<section id="failed"><h2>Failed ({len(entries)})</h2><ul>{items}</ul></section>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.entry{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}
.entry h2{margin:0 0 .5em;font-size:1.1em}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0}
figcaption{font-size:.8em;color:#666;text-align:center}
img{width:320px;height:320px;object-fit:contain;background:#eee;display:block}
.viewer{width:320px;height:320px;background:rgb(34,38,46);position:relative;cursor:grab}
.viewer canvas{display:block;width:100%;height:100%}
.missing{width:320px;height:320px;display:flex;align-items:center;justify-content:center;
background:#eee;color:#888}
.viewer[data-viewer-error]{color:#f88;padding:1em;box-sizing:border-box}
table.meta{border-collapse:collapse;font-size:.85em;margin-top:.6em}
table.meta th{text-align:left;padding:2px 1em 2px 0;color:#555;font-weight:600}
#failed{background:#fff4f4;border:1px solid #e99;border-radius:6px;padding:1em}
#failed .error{color:#a00}
#js-errors{color:#a00;white-space:pre-wrap}
"""

# Records uncaught script errors into the DOM (for users and the headless browser test).
_ERROR_SCRIPT = """
(function(){var n=0;function rec(msg){n+=1;
document.documentElement.setAttribute('data-js-errors',String(n));
var el=document.getElementById('js-errors');if(el){el.hidden=false;el.textContent+=msg+'\\n';}}
window.onerror=function(msg,src,line){rec(String(msg)+(src?' ('+src+':'+line+')':''));};
window.addEventListener('unhandledrejection',function(e){
rec('unhandled rejection: '+String(e.reason&&e.reason.message||e.reason));});
window.__facereconError=rec;})();
"""

# Mounts viewers when they scroll into view; keeps at most MAX live WebGL contexts.
_MOUNT_SCRIPT = """
(function () {
  var MAX = %d, live = [];
  function fail(el, msg) {
    el.setAttribute('data-viewer-error', msg);
    el.textContent = '3D view unavailable: ' + msg;
    window.__facereconError('viewer: ' + msg);
  }
  function mount(el) {
    if (el.__handle || el.hasAttribute('data-viewer-error')) return;
    try {
      if (!window.FaceViewer) throw new Error('viewer.js did not load');
      var data = document.getElementById(el.getAttribute('data-glb')).textContent;
      el.__handle = window.FaceViewer.mount(el, data.replace(/\\s+/g, ''));
      live.push(el);
    } catch (e) { fail(el, String((e && e.message) || e)); return; }
    while (live.length > MAX) {
      var old = live.shift();
      if (old.__handle) { old.__handle.dispose(); old.__handle = null; }
    }
  }
  var els = document.querySelectorAll('.viewer[data-glb]');
  for (var k = 0; k < els.length; k++) {  // views already on screen mount at once
    var r = els[k].getBoundingClientRect();
    if (r.bottom > -200 && r.top < window.innerHeight + 200 && live.length < MAX) mount(els[k]);
  }
  if (!('IntersectionObserver' in window)) {
    for (var i = 0; i < Math.min(els.length, MAX); i++) mount(els[i]);
    return;
  }
  var io = new IntersectionObserver(function (es) {
    es.forEach(function (e) { if (e.isIntersecting) mount(e.target); });
  }, { rootMargin: '200px' });
  for (var j = 0; j < els.length; j++) io.observe(els[j]);
})();
"""


def render_report_html(entries: list[ReportEntry], out_dir: Path, title: str) -> str:
    """The report page as a string; image paths are made relative to ``out_dir``."""
    for e in entries:
        if e.status not in ("ok", "failed"):
            raise ValueError(f"entry {e.name!r}: status must be 'ok' or 'failed', got {e.status!r}")
    ok = [(i, e) for i, e in enumerate(entries) if e.status == "ok"]
    failed = [e for e in entries if e.status == "failed"]
    summary = f"{len(ok)} reconstructed, {len(failed)} failed, {len(entries)} inputs"
    body = "".join(_entry_html(i, e, out_dir) for i, e in ok)
    t = html.escape(title)
    return (
        '<!doctype html>\n<html lang="en" data-js-errors="0"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{t}</title>'
        f"<style>{_STYLE}</style><script>{_ERROR_SCRIPT}</script></head><body>"
        f'<h1>{t}</h1><p class="summary">{summary}</p><pre id="js-errors" hidden></pre>'
        f"{_failed_html(failed)}{body}"
        f'<script src="{VIEWER_ASSET}"></script><script>{_MOUNT_SCRIPT % MAX_LIVE_VIEWERS}</script>'
        "</body></html>\n"
    )


def report_conflicts(out_dir: str | os.PathLike) -> list[Path]:
    """Existing files :func:`write_report` would replace in ``out_dir``: ``report.html``, and
    ``viewer.js`` when it differs from the bundled one (an identical copy is reused)."""
    out_dir = Path(out_dir)
    report, viewer = out_dir / "report.html", out_dir / VIEWER_ASSET
    found = [report] if report.exists() else []
    if viewer.exists() and not (
        viewer.is_file() and viewer.read_bytes() == viewer_asset_path().read_bytes()
    ):
        found.append(viewer)
    return found


def write_report(
    out_dir: str | os.PathLike,
    entries: list[ReportEntry],
    title: str = "facerecon report",
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir/report.html`` and copy ``viewer.js`` next to it; returns the HTML path."""
    out_dir = Path(out_dir)
    report = ensure_writable(out_dir / "report.html", overwrite)
    asset = viewer_asset_path()
    if not asset.is_file():
        raise RuntimeError(f"{asset} is missing; rebuild it with viewer/build.sh")
    viewer = out_dir / VIEWER_ASSET
    code = asset.read_bytes()
    if not (viewer.is_file() and viewer.read_bytes() == code):
        atomic_write_bytes(ensure_writable(viewer, overwrite), code)
    atomic_write_text(report, render_report_html(list(entries), out_dir, title))
    return report

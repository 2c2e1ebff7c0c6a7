"""The page a client opens from a share link: the renders large, each with its download, and nothing
else (no prompt, no settings, no other project, no script). Every text is HTML-escaped; the page's one
style block is allowed by its hash in the page's Content-Security-Policy, which allows nothing else
but images from this server.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from html import escape

STYLE = """
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f6f4f0;color:#222}
header{padding:28px 40px 8px;max-width:1280px;margin:0 auto}h1{margin:0;font-size:28px;font-weight:600}
header p{margin:6px 0 0;color:#666}
main{padding:16px 40px 48px;display:grid;gap:32px;max-width:1280px;margin:0 auto}
figure{margin:0;background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12);overflow:hidden}
figure img{display:block;width:100%;height:auto}
figcaption{display:flex;justify-content:space-between;align-items:center;padding:12px 16px;color:#555}
a.download{background:#2f5d50;color:#fff;text-decoration:none;padding:8px 14px;border-radius:6px}
.gone{max-width:560px;margin:80px auto;text-align:center}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; img-src 'self'; style-src 'sha256-{_STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",  # the token is in the URL: no other site learns it
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def render_page(title: str, subtitle: str, images: Sequence[tuple[str, int, int]], base: str) -> str:
    """The renders (image id, width, height), each shown large from `base`/images/<id> with a download."""
    figures = []
    for n, (image_id, width, height) in enumerate(images, start=1):
        src = f"{base}/images/{escape(image_id)}"
        figures.append(
            f'<figure><img src="{src}" width="{width}" height="{height}" alt="Render {n}" loading="lazy">'
            f"<figcaption><span>Render {n} · {width} × {height}</span>"
            f'<a class="download" href="{src}?download=1" download>Download PNG</a></figcaption></figure>'
        )
    empty = "<p>Nothing has been added here yet.</p>" if not figures else ""
    sub = f"<p>{escape(subtitle)}</p>" if subtitle else ""
    return _page(
        title, f"<header><h1>{escape(title)}</h1>{sub}</header><main>{''.join(figures)}{empty}</main>"
    )


def gone_page(expired: bool) -> str:
    why = "This link has expired." if expired else "This link is not valid (it may have been withdrawn)."
    return _page(
        "Link unavailable", f'<div class="gone"><h1>{why}</h1><p>Ask your designer for a new one.</p></div>'
    )

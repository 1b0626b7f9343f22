"""Sphinx extension of the book: keep the built pages free of references to other hosts.

Jupyter Book 1.x always loads ``sphinx_thebe``, which writes the address of thebe on a CDN
into every page (``THEBE_JS_URL``), loads ``sphinx-thebe.js`` and appends a binder
configuration, even with thebe and launch buttons off. The book never launches a kernel, so
this extension unhooks sphinx-thebe's event handlers and drops its assets from every page;
everything else a page loads comes from its own ``_static`` folder (docs/design.md, "The
book").
Registered in ``_config.yml`` under ``sphinx: local_extensions``.
"""

from __future__ import annotations

from typing import Any


def _is_thebe(asset: Any) -> bool:
    filename = str(getattr(asset, "filename", asset) or "")
    body = str(getattr(asset, "attributes", {}).get("body", "") or "")
    return "thebe" in filename or "THEBE_JS_URL" in body


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [a for a in context[key] if not _is_thebe(a)]


def _unhook_thebe(app) -> None:
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").startswith("sphinx_thebe"):
                app.disconnect(listener.id)


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", _unhook_thebe, priority=100)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

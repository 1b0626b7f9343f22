"""The book's site: the pinned JavaScript the pages load with no network (copied, trimmed, out
of ``node_modules``), ``jupyter-book build`` and its table of contents, and publishing a
self-contained static site whose pages fetch nothing from outside."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vit1d.book.execute import StepFailed
from vit1d.book.stamps import json_sha
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256

#: Folder (under the repository root) where the trimmed JavaScript assets are copied.
ASSETS_DIR = Path("node_modules") / ".book-static"


#: What the built pages load, copied from ``node_modules``: destination -> source (a file or a
#: folder copied whole). Everything else in the npm packages stays out of the site.
ASSET_FILES = {
    "require/require.js": "requirejs/require.js",
    "html-manager/embed-amd.js": "@jupyter-widgets/html-manager/dist/embed-amd.js",
    "mathjax/tex-mml-chtml.js": "mathjax/es5/tex-mml-chtml.js",
    "mathjax/output/chtml/fonts/woff-v2": "mathjax/es5/output/chtml/fonts/woff-v2",
    "mathjax/input/tex/extensions": "mathjax/es5/input/tex/extensions",
    "mathjax/a11y": "mathjax/es5/a11y",
    "mathjax/ui": "mathjax/es5/ui",
}


#: Font files of the HTML manager's bundled icon font (only the woff2 ones: every browser
#: that runs the bundle reads woff2).
ASSET_GLOBS = {"html-manager": ("@jupyter-widgets/html-manager/dist", "*.woff2")}


def prepare_assets(root: Path, say: Callable[[str], None] = print) -> str:
    """Install the pinned npm packages (if needed) and copy the trimmed files the pages load
    into ``node_modules/.book-static/``. Returns ``"up to date"`` when nothing was done."""
    lock = root / "package-lock.json"
    spec = lock if lock.is_file() else root / "package.json"
    if not spec.is_file():
        raise UserError(f"{root / 'package.json'} is missing: it pins the book's JavaScript")
    key = file_sha256(spec) + ":" + json_sha([ASSET_FILES, ASSET_GLOBS, ASSETS_PATH_JS])
    dest = root / ASSETS_DIR
    stamp = dest.with_name(dest.name + ".stamp")
    if stamp.is_file() and stamp.read_text() == key:
        return "up to date"
    nm = root / "node_modules"
    sources = [nm / src for src in ASSET_FILES.values()]
    installed = nm / ".package-lock.json"
    if not all(p.exists() for p in sources) or not _npm_matches(lock, installed):
        npm = shutil.which("npm")
        if npm is None:
            raise UserError(
                "npm is not installed: the book needs it once to fetch require.js, the "
                "ipywidgets HTML manager and MathJax (Debian: apt-get install npm)"
            )
        verb = "ci" if lock.is_file() else "install"
        say(f"      npm {verb} (pinned in package.json)")
        run_command([npm, verb, "--no-audit", "--no-fund", "--ignore-scripts"], "assets", cwd=root)
    copy_assets(nm, dest)
    atomic.write_text(stamp, key)
    return "copied"


def _npm_matches(lock: Path, installed: Path) -> bool:
    """Whether node_modules was installed from this lock file (npm keeps its own copy)."""
    if not lock.is_file() or not installed.is_file():
        return installed.is_file()
    try:
        want = json.loads(lock.read_text()).get("packages", {})
        have = json.loads(installed.read_text()).get("packages", {})
    except json.JSONDecodeError:
        return False
    return all(have.get(k, {}).get("version") == v.get("version") for k, v in want.items() if k)


def copy_assets(node_modules: Path, dest: Path) -> None:
    """Copy :data:`ASSET_FILES` and :data:`ASSET_GLOBS` from ``node_modules`` to ``dest``
    (emptied first)."""
    if dest.exists():
        shutil.rmtree(dest)
    for target, source in ASSET_FILES.items():
        src = node_modules / source
        if not src.exists():
            raise StepFailed("assets", f"{src} is missing after npm install")
        out = dest / target
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out)
        else:
            shutil.copyfile(src, out)
    for target, (folder, pattern) in ASSET_GLOBS.items():
        for src in sorted((node_modules / folder).glob(pattern)):
            out = dest / target / src.name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    (dest / "html-manager" / "require-paths.js").write_text(ASSETS_PATH_JS)


#: Loaded between require.js and the HTML manager (``_config.yml``). The manager's bundle is
#: the AMD module ``@jupyter-widgets/html-manager/dist/embed-amd`` and loads its icon fonts
#: beside the address require.js gives that name (by default, under the page's folder, where
#: nothing is); map the name to this folder so the fonts come from ``_static``. The widget
#: modules it defines (``@jupyter-widgets/controls``, ...) place their fonts beside their own
#: addresses too, so the ``@jupyter-widgets`` prefix maps here as well (require.js uses the
#: longest matching prefix).
ASSETS_PATH_JS = """// written by vit1d.book.pipeline: the ipywidgets HTML manager finds its fonts beside this file
(function () {
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/\\/[^/]*$/, "");
  window.require.config({
    paths: {"@jupyter-widgets/html-manager/dist": here, "@jupyter-widgets": here}
  });
})();
"""


#: Attributes that make a browser fetch something when the page loads.
_FETCH_ATTRS = ("src", "data-src", "poster")


def _book_presets(book: Path) -> set[str]:
    """Presets the executed notebooks in ``book/`` were run with (papermill records them)."""
    found = set()
    for path in book.glob("*.ipynb"):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, json.JSONDecodeError):
            continue
        preset = meta.get("papermill", {}).get("parameters", {}).get("preset")
        if preset:
            found.add(preset)
    return found


def external_references(html_dir: Path) -> list[str]:
    """``file: url`` for every resource a page of the site would fetch from another host
    (scripts, styles, images, media, fonts in CSS); links to other sites are fine."""
    found = []
    tag_attr = re.compile(
        r"<(script|img|audio|video|source|iframe|embed)\b[^>]*?\s(?:src|data-src|poster)"
        r"\s*=\s*[\"']((?:https?:)?//[^\"']+)",
        re.IGNORECASE,
    )
    link_css = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
    css_url = re.compile(r"url\(\s*[\"']?((?:https?:)?//[^)\"']+)", re.IGNORECASE)
    for path in sorted(html_dir.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(html_dir).as_posix()
        if path.suffix == ".css":
            found += [f"{rel}: {u}" for u in css_url.findall(text)]
            continue
        found += [f"{rel}: {m[1]}" for m in tag_attr.findall(text)]
        for tag in link_css.findall(text):
            rel_attr = re.search(r"rel\s*=\s*[\"']([^\"']+)", tag, re.IGNORECASE)
            href = re.search(r"href\s*=\s*[\"']((?:https?:)?//[^\"']+)", tag, re.IGNORECASE)
            if (
                href
                and rel_attr
                and rel_attr[1].lower()
                in (
                    "stylesheet",
                    "preload",
                    "modulepreload",
                    "icon",
                    "shortcut icon",
                    "manifest",
                )
            ):
                found.append(f"{rel}: {href[1]}")
    return found


def publish_site(root: Path, out: Path, preset: str | None = None) -> Path:
    """Copy the built HTML book into ``out`` as a self-contained static site (every asset
    local, ``.nojekyll`` for GitHub Pages). Fails if a page would fetch from another host,
    or, given ``preset``, if the book's notebooks were executed for another preset."""
    html = root / "book" / "_build" / "html"
    if not (html / "index.html").is_file():
        raise UserError(f"no built book at {html}: run `make book` (python -m vit1d.cli.book)")
    if preset is not None:
        built = _book_presets(root / "book")
        if built and built != {preset}:
            raise UserError(
                f"the book in book/ was executed for preset(s) {', '.join(sorted(built))}, "
                f"not {preset}: run `python -m vit1d.cli.book --preset {preset}` first"
            )
    external = external_references(html)
    if external:
        raise UserError(
            "the built book fetches from other hosts, so it is not self-contained:\n  "
            + "\n  ".join(external[:20])
        )
    out = Path(out).resolve()
    if out == html.resolve() or html.resolve() in out.parents:
        raise UserError(f"--out must be outside {html}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    (out / ".nojekyll").write_text("")
    return out


def run_command(cmd: list[str], step: str, cwd: Path, tail: int = 40) -> None:
    """Run a command, streaming nothing unless it fails; then raise StepFailed with the last
    lines of its output."""
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except FileNotFoundError as exc:
        raise StepFailed(step, f"step {step}: cannot run {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        shown = "\n".join("    | " + x for x in proc.stdout.strip().splitlines()[-tail:])
        raise StepFailed(
            step,
            f"step {step} failed: `{' '.join(cmd)}` exited with {proc.returncode}\n{shown}",
        )


def jupyter_book_exe() -> str:
    candidate = Path(sys.executable).parent / "jupyter-book"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("jupyter-book")
    if not found:
        raise UserError("jupyter-book is not installed: pip install -e '.[book]'")
    return found


def toc_files(root: Path) -> list[str]:
    """Every ``file:`` (and the root) of ``_toc.yml``, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def chapter_source(book: Path, name: str) -> Path | None:
    for ext in (".ipynb", ".md", ".rst"):
        path = book / f"{name}{ext}"
        if path.is_file():
            return path
    return None

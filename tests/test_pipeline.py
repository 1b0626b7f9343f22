"""The book pipeline (``vit1d.book.pipeline``): incremental stamps, failure reports, assets, site.

Most tests run the pipeline on tiny fake notebooks with a fake executor (no kernel); two run
real papermill kernels on a two-cell notebook, to check what a failure report names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vit1d.book import execute, layout, site, stamps
from vit1d.book import pipeline as pl
from vit1d.cli import book
from vit1d.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = 'preset = "smoke"\ndata_dir = ""\nruns_dir = ""\nseed = None\noverrides = []'


def write_template(path: Path, *sources: str, needs=None, code=None, files=None) -> Path:
    cells = [new_markdown_cell(f"# {path.stem}")]
    params = new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    cells.append(params)
    cells += [new_code_cell(src) for src in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    meta = {}
    if needs is not None:
        meta["needs"] = needs
    if code is not None:
        meta["code"] = code
    if files is not None:
        meta["files"] = files
    nb.metadata["vit1d"] = meta
    nbformat.write(nb, path)
    return path


class FakeExecutor:
    """Records which templates ran and with which parameters; copies template to output."""

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def __call__(self, template: Path, output: Path, parameters: dict, cwd: Path) -> None:
        self.calls.append((template.stem, dict(parameters)))
        shutil.copyfile(template, output)
        if template.stem == self.fail:
            raise RuntimeError("boom")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "src" / "vit1d").mkdir(parents=True)
    (root / "src" / "vit1d" / "model.py").write_text("# v1\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: 01_a\n")
    write_template(root / "notebooks" / "01_a.ipynb", "x = 1", code=["model.py"])
    write_template(root / "notebooks" / "02_b.ipynb", "y = 2")
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.json").write_text('{"version": 1}')
    return root


def make(root: Path, fake: FakeExecutor, preset: str = "smoke", **kw) -> pl.Pipeline:
    lay = layout.Layout.make(root, preset, root.parent / "data", root.parent / f"runs-{preset}")
    return pl.Pipeline(lay, execute=fake, out=open("/dev/null", "w"), **kw)


def run(root: Path, **kw) -> FakeExecutor:
    fake = FakeExecutor(kw.pop("fail", None))
    make(root, fake, **kw).run_notebooks()
    return fake


def test_first_run_executes_everything_then_nothing(project):
    assert run(project).names == ["01_a", "02_b"]
    assert (project / "book" / "01_a.ipynb").is_file()
    assert (project / "book" / "02_b.ipynb").is_file()
    assert run(project).names == []


def test_only_declared_parameters_are_passed(project):
    fake = run(project)
    params = dict(fake.calls)["01_a"]
    assert set(params) == {"preset", "data_dir", "runs_dir", "seed", "overrides"}
    assert params["preset"] == "smoke" and Path(params["data_dir"]).is_absolute()


def test_editing_a_template_redoes_it_and_its_dependants(project):
    run(project)
    write_template(project / "notebooks" / "02_b.ipynb", "y = 3")
    assert run(project).names == ["02_b"]
    write_template(project / "notebooks" / "01_a.ipynb", "x = 2", code=["model.py"])
    assert run(project).names == ["01_a", "02_b"]  # 02_b needs every earlier step


def test_outputs_and_cosmetic_metadata_do_not_count(project):
    run(project)
    path = project / "notebooks" / "02_b.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nb.cells[2].execution_count = 7
    nb.metadata["widgets"] = {"x": 1}
    nbformat.write(nb, path)
    assert run(project).names == []


def test_declared_needs_limit_what_is_redone(project):
    write_template(project / "notebooks" / "02_b.ipynb", "y = 2", needs=["corpus"])
    run(project)
    write_template(project / "notebooks" / "01_a.ipynb", "x = 5", code=["model.py"])
    assert run(project).names == ["01_a"]


def test_library_code_and_corpus_changes_redo_what_depends_on_them(project):
    run(project)
    (project / "src" / "vit1d" / "model.py").write_text("# v2\n")
    assert run(project).names == ["01_a", "02_b"]
    (project.parent / "data" / "corpus.json").write_text('{"version": 2}')
    assert run(project).names == ["01_a", "02_b"]


def test_editing_a_module_a_notebook_imports_redoes_it(project):
    """No list kept by hand: the modules a chapter's cells import, and what those import in
    turn (inside functions too), are part of its stamp; other modules are not."""
    src = project / "src" / "vit1d"
    (src / "__init__.py").write_text("")
    (src / "plots.py").write_text(
        "def f():\n    from vit1d import colours\n\n    return colours.X\n"
    )
    (src / "colours.py").write_text("X = 1\n")
    (src / "unused.py").write_text("Y = 1\n")
    source = "%matplotlib inline\nfrom vit1d import plots\n!echo shell lines parse too"
    write_template(project / "notebooks" / "02_b.ipynb", source, needs=["corpus"])
    assert run(project).names == ["01_a", "02_b"]
    (src / "colours.py").write_text("X = 2\n")
    assert run(project).names == ["02_b"]
    (src / "plots.py").write_text("def f():\n    return 3\n")
    assert run(project).names == ["02_b"]
    (src / "unused.py").write_text("Y = 2\n")
    assert run(project).names == []


def test_every_chapter_that_imports_plots_depends_on_it():
    """The book's own templates: a chapter whose cells import vit1d.viz.plots is redone when
    plots.py changes, whatever its metadata lists."""
    src = ROOT / "src" / "vit1d"
    checked = 0
    for template in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = stamps.cell_sources(json.loads(template.read_text()))
        if any("from vit1d.viz import" in c and "plots" in c for c in cells):
            files = stamps.imported_library_files(src, cells)
            assert "viz/plots.py" in files and "viz/__init__.py" in files, template.name
            checked += 1
    assert checked >= 3


def test_declared_repository_files_redo_the_steps_that_read_them(project):
    """A new committed reference checkpoint must redo the chapters that probe it."""
    ref = project / "checkpoints" / "reference"
    write_template(
        project / "notebooks" / "02_b.ipynb",
        "y = 2",
        needs=["corpus"],
        files=["checkpoints/reference/model.safetensors"],
    )
    assert run(project).names == ["01_a", "02_b"]
    assert run(project).names == []
    ref.mkdir(parents=True)
    (ref / "model.safetensors").write_bytes(b"weights v1")
    assert run(project).names == ["02_b"]  # the file appeared
    (ref / "model.safetensors").write_bytes(b"weights v2")
    assert run(project).names == ["02_b"]
    (ref / "provenance.json").write_text("{}")  # not declared: nothing to redo
    assert run(project).names == []


def test_config_change_redoes_steps(project):
    run(project)
    assert run(project, overrides=["train.steps=3"]).names == ["01_a", "02_b"]
    assert run(project, overrides=["train.steps=3"]).names == []
    assert run(project, overrides=["train.steps=3"], seed=5).names == ["01_a", "02_b"]


def test_bad_override_is_a_user_error(project):
    with pytest.raises(UserError, match="no_such_key"):
        run(project, overrides=["train.no_such_key=1"])


def test_force_and_missing_output_redo_a_step(project):
    run(project)
    assert run(project, force=["02_b"]).names == ["02_b"]
    # a forced upstream step redoes its dependants: their inputs changed
    assert run(project, force=["01_a"]).names == ["01_a", "02_b"]
    assert run(project, force=["all"]).names == ["01_a", "02_b"]
    (project.parent / "runs-smoke" / "notebooks" / "02_b.ipynb").unlink()
    assert run(project).names == ["02_b"]


def test_plan_reports_why_without_running(project):
    fake = FakeExecutor()
    pipe = make(project, fake)
    assert [why for _, _, why in pipe.plan()] == ["never ran", "never ran"]
    pipe.run_notebooks()
    write_template(project / "notebooks" / "01_a.ipynb", "x = 9", code=["model.py"])
    reasons = [why for _, _, why in make(project, fake).plan()]
    assert reasons == ["inputs changed", "upstream 01_a will run"]
    assert len(fake.calls) == 2


def test_failure_stops_names_the_notebook_and_stamps_nothing(project):
    with pytest.raises(execute.StepFailed) as info:
        run(project, fail="01_a")
    assert info.value.step == "01_a"
    assert "01_a.ipynb" in str(info.value) and "boom" in str(info.value)
    assert not (project / "book" / "01_a.ipynb").exists()
    assert not (project.parent / "runs-smoke" / ".stamps" / "01_a.json").exists()
    assert (project.parent / "runs-smoke" / "failed" / "01_a.ipynb").is_file()
    assert run(project).names == ["01_a", "02_b"]  # retried next time


def test_switching_presets_recopies_without_recomputing(project):
    run(project, preset="smoke")
    smoke = (project / "book" / "01_a.ipynb").read_bytes()
    assert run(project, preset="default").names == ["01_a", "02_b"]
    # the default run's outputs differ (another runs folder in the parameters)
    fake = run(project, preset="smoke")
    assert fake.names == []
    assert (project / "book" / "01_a.ipynb").read_bytes() == smoke


def test_timings_file_lists_every_step(project):
    fake = FakeExecutor()
    pipe = make(project, fake)
    pipe.run_notebooks()
    pipe.write_timings(finished=True)
    data = json.loads(pipe.layout.timings.read_text())
    assert [s["name"] for s in data["steps"]] == ["01_a", "02_b"]
    assert all(s["status"] == "ran" and s["compute_seconds"] >= 0 for s in data["steps"])
    assert data["preset"] == "smoke" and data["finished_at"]
    pipe2 = make(project, fake)
    pipe2.run_notebooks()
    data = json.loads(pipe2.layout.timings.read_text())
    assert [s["status"] for s in data["steps"]] == ["skipped", "skipped"]
    assert all(s["compute_seconds"] is not None for s in data["steps"])


def test_a_placeholder_and_a_notebook_for_one_chapter_is_an_error(project):
    (project / "book" / "02_b.md").write_text("# placeholder\n")
    with pytest.raises(UserError, match="book/02_b.md"):
        run(project)


def test_unknown_need_is_an_error(project):
    write_template(project / "notebooks" / "02_b.ipynb", "y = 2", needs=["nope"])
    with pytest.raises(UserError, match="nope"):
        run(project)


def test_book_step_checks_the_toc(project):
    pipe = make(project, FakeExecutor())
    with pytest.raises(execute.StepFailed, match="intro"):
        pipe.check_toc()
    (project / "book" / "intro.md").write_text("# intro\n")
    with pytest.raises(execute.StepFailed, match="01_a"):
        pipe.check_toc()
    pipe.run_notebooks()
    pipe.check_toc()


@pytest.mark.slow  # starts real Jupyter kernels
def test_real_kernel_failure_names_notebook_and_cell(project):
    """papermill end to end: parameters arrive, and a failing cell is reported by number."""
    pytest.importorskip("papermill", reason="the book extra: pip install -e '.[book]'")
    write_template(
        project / "notebooks" / "01_a.ipynb",
        "assert preset == 'default', preset\nprint('ok', preset)",
    )
    write_template(
        project / "notebooks" / "02_b.ipynb",
        "z = 1",
        "values = {'a': 1}\nvalues['missing']  # fails",
    )
    lay = layout.Layout.make(project, "default", project.parent / "data", project.parent / "runs")
    pipe = pl.Pipeline(lay, out=open("/dev/null", "w"))
    with pytest.raises(execute.StepFailed) as info:
        pipe.run_notebooks()
    message = str(info.value)
    assert info.value.step == "02_b" and info.value.cell == 4
    assert "notebook 02_b.ipynb failed at cell 4 of notebooks/02_b.ipynb" in message
    assert "values['missing']" in message and "KeyError" in message
    assert "at: values['missing']  # fails" in message
    executed = json.loads((project / "book" / "01_a.ipynb").read_text())
    assert "ok default" in json.dumps(executed["cells"])
    assert (project.parent / "runs" / "failed" / "02_b.ipynb").is_file()


def test_describe_failure_without_papermill_details(tmp_path):
    tpl = write_template(tmp_path / "03_c.ipynb", "pass")
    err = execute.describe_failure(tpl, None, RuntimeError("kernel died"))
    assert err.step == "03_c" and err.cell is None
    assert "notebook 03_c.ipynb failed" in str(err) and "kernel died" in str(err)


# -- assets and site ---------------------------------------------------------------------------


def fake_node_modules(root: Path) -> None:
    nm = root / "node_modules"
    for source in site.ASSET_FILES.values():
        path = nm / source
        if path.suffix == ".js":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("// js\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "part.js").write_text("// part\n")
    folder, _ = site.ASSET_GLOBS["html-manager"]
    (nm / folder / "abc.woff2").write_bytes(b"font")
    (nm / folder / "abc.ttf").write_bytes(b"font")
    lock = {"packages": {"": {}, "node_modules/mathjax": {"version": "3.2.2"}}}
    (root / "package-lock.json").write_text(json.dumps(lock))
    (nm / ".package-lock.json").write_text(json.dumps(lock))


def test_assets_are_copied_trimmed_and_stamped(tmp_path):
    fake_node_modules(tmp_path)
    assert site.prepare_assets(tmp_path, say=lambda s: None) == "copied"
    dest = tmp_path / site.ASSETS_DIR
    assert (dest / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (dest / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "part.js").is_file()
    assert (dest / "html-manager" / "abc.woff2").is_file()
    assert not (dest / "html-manager" / "abc.ttf").exists()  # trimmed
    assert "require.config" in (dest / "html-manager" / "require-paths.js").read_text()
    assert not list(dest.rglob(".stamp"))  # the stamp stays outside what Sphinx copies
    assert site.prepare_assets(tmp_path, say=lambda s: None) == "up to date"


def test_config_points_sphinx_at_the_assets():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = config["sphinx"]["config"]
    static = [(ROOT / "book" / p).resolve() for p in sphinx["html_static_path"]]
    assert (ROOT / site.ASSETS_DIR).resolve() in static
    assert not (ROOT / "book" / "_static").exists() or not list(
        (ROOT / "book" / "_static").rglob("*.js")
    )
    targets = set(site.ASSET_FILES) | {"html-manager/require-paths.js"}
    assert sphinx["mathjax_path"] in targets
    assert all(js in targets for js in sphinx["nb_ipywidgets_js"])
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["launch_buttons"]["thebe"] is False


def test_external_references_finds_fetches_not_links(tmp_path):
    (tmp_path / "a.html").write_text(
        '<a href="https://example.org">fine</a>'
        '<script src="https://cdn.example/x.js"></script>'
        '<link rel="stylesheet" href="//cdn.example/y.css">'
        '<img src="_images/local.png"><script src="_static/z.js"></script>'
    )
    (tmp_path / "s.css").write_text("@font-face { src: url('https://fonts.example/f.woff2'); }")
    found = site.external_references(tmp_path)
    assert found == [
        "a.html: https://cdn.example/x.js",
        "a.html: //cdn.example/y.css",
        "s.css: https://fonts.example/f.woff2",
    ]


def test_publish_site_copies_a_self_contained_book(tmp_path):
    html = tmp_path / "book" / "_build" / "html"
    (html / "_static").mkdir(parents=True)
    (html / "index.html").write_text('<script src="_static/a.js"></script>')
    (html / "_static" / "a.js").write_text("//")
    (html / ".buildinfo").write_text("x")
    out = site.publish_site(tmp_path, tmp_path / "public")
    assert (out / "index.html").is_file() and (out / "_static" / "a.js").is_file()
    assert (out / ".nojekyll").is_file() and not (out / ".buildinfo").exists()
    nb = {"cells": [], "metadata": {"papermill": {"parameters": {"preset": "smoke"}}}}
    (tmp_path / "book" / "01_a.ipynb").write_text(json.dumps(nb))
    assert site.publish_site(tmp_path, tmp_path / "public", preset="smoke") == out
    with pytest.raises(UserError, match="not default"):
        site.publish_site(tmp_path, tmp_path / "public", preset="default")
    (html / "index.html").write_text('<script src="https://cdn.example/a.js"></script>')
    with pytest.raises(UserError, match="cdn.example"):
        site.publish_site(tmp_path, tmp_path / "public")


# -- the skeleton itself -----------------------------------------------------------------------


def test_every_chapter_has_exactly_one_source():
    templates = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    for name in site.toc_files(ROOT):
        placeholder = any((ROOT / "book" / f"{name}{ext}").is_file() for ext in (".md", ".rst"))
        assert placeholder != (name in templates), (
            f"chapter {name}: needs either book/{name}.md or notebooks/{name}.ipynb, not both"
        )
    assert templates <= set(site.toc_files(ROOT)), "a template that no chapter shows"
    for link in ("_config.yml", "_toc.yml"):
        path = ROOT / "book" / link
        assert path.is_symlink() and path.resolve() == (ROOT / link).resolve()


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_templates_are_clean_papermill_templates(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    declared = stamps.declared_parameters(nb)
    assert declared, f"{path.name} has no cell tagged 'parameters'"
    assert set(declared) <= set(layout.PARAMETERS), set(declared) - set(layout.PARAMETERS)
    assert {"preset", "data_dir", "runs_dir", "seed", "checkpoint"} <= set(declared)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs stored"
    step = stamps.NotebookStep.load(path)
    known = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")} | {"corpus"}
    assert set(step.needs or []) <= known


def test_status_command_runs(capsys, project):
    (project.parent / "data").mkdir(exist_ok=True)
    code = book.main(
        [
            "status",
            "--preset",
            "smoke",
            "--root",
            str(project),
            "--data",
            str(project.parent / "data"),
            "--runs",
            str(project.parent / "r"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "01_a" in out and "would run: never ran" in out


def test_fresh_run_dir_keeps_a_run_of_the_same_inputs_only(tmp_path):
    out = tmp_path / "pretrain"
    cfg = {"seed": 0, "train": {"steps": 5, "progress": True}}
    data, code = {"manifest": "1"}, {"train.py": "a"}
    assert not layout.fresh_run_dir(out, cfg, data, code)
    (out / "model.safetensors").write_text("w")
    same = {"seed": 0, "train": {"steps": 5, "progress": False}}  # a resumable setting
    assert not layout.fresh_run_dir(out, same, data, code)
    assert (out / "model.safetensors").exists()
    for changed in ((cfg, {"manifest": "2"}, code), (cfg, data, {"train.py": "b"})):
        (out / "model.safetensors").write_text("w")
        assert layout.fresh_run_dir(out, *changed)
        assert (tmp_path / "pretrain.previous" / "model.safetensors").exists()
        assert not (out / "model.safetensors").exists()
    unknown = tmp_path / "other"
    unknown.mkdir()
    (unknown / "model.safetensors").write_text("w")  # a run with no recorded inputs
    assert layout.fresh_run_dir(unknown, cfg, data, code)


def test_data_fingerprint_sees_a_rebuilt_corpus(tmp_path):
    (tmp_path / "pretrain").mkdir()
    manifest = tmp_path / "pretrain" / "manifest.csv"
    manifest.write_text("audio,split\na.flac,train\n")
    (tmp_path / "corpus.json").write_text('{"build": 1}')
    first = layout.data_fingerprint(manifest)
    (tmp_path / "corpus.json").write_text('{"build": 2}')
    assert layout.data_fingerprint(manifest) != first
    assert set(first) == {"manifest", "corpus"}


def test_masked_pretraining_runs_before_the_chapters_that_read_it():
    """The masked foil is trained by its own template, between the contrastive pretraining
    and the first probing chapter (name order), and every chapter that reads it says so."""
    steps = [s.name for s in stamps.discover(ROOT / "notebooks")]
    assert steps.index("03_pretrain") < steps.index("03_pretrain_masked")
    assert steps.index("03_pretrain_masked") < steps.index("04_global_probes")
    for step in stamps.discover(ROOT / "notebooks"):
        source = (ROOT / "notebooks" / f"{step.name}.ipynb").read_text()
        if "masked_checkpoint" in source and step.name != "03_pretrain_masked":
            assert "03_pretrain_masked" in (step.needs or []), step.name

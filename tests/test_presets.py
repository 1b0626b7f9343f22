"""Pipeline presets (presets/pipeline.yaml) and the settings reader they share with the
training presets: every preset complete, nothing falls back, errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from vit1d.book.layout import Layout
from vit1d.book.stamps import imported_library_files
from vit1d.core.errors import UserError
from vit1d.core.paths import PACKAGE_DIR, PRESET_DIR
from vit1d.core.presets import PIPELINE_FILE, SECTIONS, pipeline_names, pipeline_preset
from vit1d.core.settings import merge_settings
from vit1d.corpus.config import PRESETS as CORPUS_PRESETS
from vit1d.pretrain.config import PRESETS as TRAINING_PRESETS
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.settings import probe_config, probe_settings
from vit1d.studies.recipes import StudySettings, study_settings


@dataclass
class _Inner:
    files: tuple[int, int, int] = (1, 2, 3)
    seeds: tuple[int, ...] = (0,)
    overrides: dict = field(default_factory=dict)


@dataclass
class _Outer:
    name: str = "x"
    inner: _Inner = field(default_factory=_Inner)


def test_every_pipeline_preset_has_a_training_preset_and_a_corpus() -> None:
    assert set(pipeline_names()) == set(TRAINING_PRESETS)
    for name in pipeline_names():
        spec = pipeline_preset(name)
        assert spec.corpus in CORPUS_PRESETS
        assert (PRESET_DIR / f"corpus_{spec.corpus}.yaml").is_file()


def test_every_preset_writes_every_section_in_the_file() -> None:
    """Nothing falls back to another preset: each one spells out all its sections."""
    raw = yaml.safe_load(PIPELINE_FILE.read_text())
    for name, sections in raw.items():
        assert set(sections) == set(SECTIONS), name


def test_long_probes_like_default_and_smoke_differs() -> None:
    assert probe_settings("long") == probe_settings("default")
    assert probe_settings("smoke").seeds == (0, 1)
    assert probe_settings("smoke") != probe_settings("default")
    assert probe_config("paper").max_local_files == (0, 0, 0)
    assert probe_config("default").max_global_files == (1000, 200, 0)  # a tuple, as typed


def test_default_study_is_the_dataclass_default_and_smoke_is_small() -> None:
    assert study_settings("default") == StudySettings()
    smoke = study_settings("smoke")
    assert smoke.steps < StudySettings().steps
    ProbeConfig(**smoke.probe)  # its probe overrides build a ProbeConfig
    assert pipeline_preset("smoke").study_in_book and not pipeline_preset("default").study_in_book


def test_an_unknown_preset_is_refused_everywhere(tmp_path: Path) -> None:
    for read in (probe_settings, study_settings, pipeline_preset):
        with pytest.raises(UserError, match="unknown pipeline preset 'lnog'.*smoke, default"):
            read("lnog")
    with pytest.raises(UserError, match="unknown pipeline preset"):
        Layout.make(tmp_path, "lnog")


def test_a_preset_missing_a_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "tiny:\n  corpus: smoke\n  study_in_book: false\n  bench: full\n  probing: {}\n"
    )
    with pytest.raises(UserError, match="missing section.*study"):
        pipeline_preset("tiny", path)
    path.write_text(
        "tiny2:\n  corpus: smoke\n  study_in_book: false\n  bench: full\n  probing: {}\n  study: {}\n"
        "  probes: {}\n"
    )
    with pytest.raises(UserError, match="unknown section.*probes"):
        pipeline_preset("tiny2", path)


def test_a_foil_source_must_be_known(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "tiny:\n  corpus: smoke\n  study_in_book: false\n  bench: full\n  foil: commited\n"
        "  probing: {}\n  study: {}\n"
    )
    with pytest.raises(UserError, match="foil must be one of train, committed"):
        pipeline_preset("tiny", path)
    assert pipeline_preset("default").foil == "committed"
    assert pipeline_preset("smoke").foil == "train"


def test_a_probe_override_that_probeconfig_lacks_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "smoke:\n  corpus: smoke\n  study_in_book: false\n  bench: quick\n  foil: train\n"
        "  probing: {config: {max_epoch: 3}}\n  study: {}\n"
    )
    monkeypatch.setattr(pipeline_preset, "__defaults__", (path,))  # the file it reads
    with pytest.raises(
        UserError, match="probing.config.max_epoch.*did you mean 'probing.config.max_epochs'"
    ):
        probe_settings("smoke")


def test_merge_settings_converts_lists_to_typed_tuples() -> None:
    obj = _Outer()
    merge_settings(obj, {"name": None, "inner": {"files": [4, 5, 6], "seeds": [1, 2]}}, "", "f")
    assert obj.name == "" and obj.inner.files == (4, 5, 6) and obj.inner.seeds == (1, 2)
    merge_settings(obj, {"inner": {"overrides": {"a": 1}}}, "", "f")
    assert obj.inner.overrides == {"a": 1}


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"inner": {"files": [1, 2]}}, "inner.files.*a list of 3 values"),
        ({"inner": {"seeds": [1, "two"]}}, "inner.seeds.*'two'.*position 1"),
        ({"inner": {"seeds": 3}}, r"inner.seeds.*write it as \[a,b,...\]"),
        ({"inner": {"overrides": [1]}}, "inner.overrides.*expects a mapping"),
        ({"inner": 3}, "section 'inner'.*must be a mapping"),
        ({"nmae": "y"}, "unknown config key 'nmae'.*did you mean 'name'"),
    ],
)
def test_merge_settings_refuses_with_the_key_and_the_fix(updates: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        merge_settings(_Outer(), updates, "", "settings.yaml")


def test_a_chapter_reading_the_probe_settings_depends_on_the_pipeline_file() -> None:
    """Editing presets/pipeline.yaml must mark the chapters that read it stale."""
    files = imported_library_files(
        PACKAGE_DIR, ["from vit1d.probing.settings import probe_settings"]
    )
    assert "presets/pipeline.yaml" in files and "core/presets.py" in files
    assert "presets/pipeline.yaml" not in imported_library_files(
        PACKAGE_DIR, ["from vit1d.audio.grid import SAMPLE_RATE"]
    )


def test_random_init_seeds_are_one_network_or_one_per_probe_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert probe_settings("default").random_init_seeds == 1
    assert probe_settings("smoke").random_init_seeds == len(probe_settings("smoke").seeds)
    assert probe_settings("paper").random_init_seeds == len(probe_settings("paper").seeds)
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "smoke:\n  corpus: smoke\n  study_in_book: false\n  bench: quick\n  foil: train\n"
        "  probing: {seeds: [0, 1, 2], random_init_seeds: 2}\n  study: {}\n"
    )
    monkeypatch.setattr(pipeline_preset, "__defaults__", (path,))
    with pytest.raises(UserError, match="random_init_seeds is 2.*write 1.*or 3"):
        probe_settings("smoke")

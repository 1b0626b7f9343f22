"""Pretraining loop: loss goes down, checkpoints load, a SIGKILLed run resumes exactly."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from vit1d import load_pretrained
from vit1d.cli import main
from vit1d.pretrain.config import load_config
from vit1d.pretrain.schedules import lr_at, weight_decay_at
from vit1d.pretrain.train import pretrain

# precision is beside the point of the tests that use it, and auto measures for seconds
FP32 = "train.precision=fp32"
TINY = [
    "model.dim=32",
    "model.depth=2",
    "model.heads=2",
    "model.head_dims=[64,32]",
    "train.num_threads=1",
]


def _run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "vit1d", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow  # trains the smoke model for 30 steps
def test_smoke_pretrain_loss_decreases(audio_dir: Path, tmp_path: Path) -> None:
    out = pretrain(
        "smoke",
        audio_dir,
        tmp_path / "run",
        progress=False,
        overrides={"train": {"steps": 30, "checkpoint_every": 10}},
    )
    with open(out / "log.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    model = load_pretrained(out)
    assert model.config["dim"] == 64
    out_a = model(torch.randn(1, 126, 128) * 20 - 40)
    assert torch.isfinite(out_a.cls).all()
    no_head = load_pretrained(out, head=False)
    assert no_head.head is None
    torch.testing.assert_close(
        no_head(torch.zeros(1, 10, 128)).cls, model(torch.zeros(1, 10, 128)).cls
    )


def test_schedules() -> None:
    cfg = load_config("smoke", ["train.steps=100", "optim.warmup_steps=10", "optim.lr=1e-3"])
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert np.all(np.diff(lrs[:10]) > 0) and lrs[9] == pytest.approx(1e-3)
    assert np.all(np.diff(lrs[10:]) <= 0) and lrs[-1] < 2e-5
    wds = [weight_decay_at(s, cfg) for s in range(100)]
    assert wds[0] == pytest.approx(0.04) and wds[-1] == pytest.approx(0.01)


def _latest_step(run: Path) -> int:
    pointer = run / "checkpoints" / "latest"
    try:
        return int(pointer.read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return 0


@pytest.mark.slow  # four pretraining runs in subprocesses
def test_sigkill_resume_is_exact(audio_dir: Path, tmp_path: Path, fault_point) -> None:
    common = [
        "--preset",
        "smoke",
        "--data",
        str(audio_dir),
        "--no-progress",
        "--set",
        "train.steps=24",
        "--set",
        "train.checkpoint_every=4",
        "--set",
        "train.num_threads=1",
        # not auto: two processes measuring bf16 on a busy CPU can choose differently, and
        # then the two runs could not end with the same weights
        "--set",
        "train.precision=fp32",
    ]
    _run_cli("pretrain", *common, "--out", str(tmp_path / "straight"))

    killed = tmp_path / "killed"
    point = fault_point("checkpoint@2")  # stands still once the step-8 checkpoint is written
    proc = subprocess.Popen(
        [sys.executable, "-m", "vit1d", "pretrain", *common, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=point.env,
    )
    point.wait(proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert _latest_step(killed) == 8
    assert not (killed / "model.safetensors").exists()

    again = _run_cli("pretrain", *common, "--out", str(killed), check=False)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to overwrite
    _run_cli("pretrain", *common, "--out", str(killed), "--resume")

    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with open(killed / "log.csv") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == list(range(1, 25))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "optim.lrr=1"], "optim.lrr"),
        (["--set", "train.steps=ten"], "train.steps"),
        (["--preset", "huge"], "huge"),
        (["--resume"], "no checkpoint"),
    ],
)
def test_cli_user_errors(audio_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    proc = _run_cli(
        "pretrain", "--data", str(audio_dir), "--out", str(tmp_path / "r"), *args, check=False
    )
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_empty_value_turns_hard_negatives_off(
    audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--set data.group_by=`` on a preset with hard negatives: a folder of audio (no
    manifest column to group by) then trains instead of being refused."""
    preset = tmp_path / "hard.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "model": {"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]},
                "data": {"group_by": "instrumentation"},
                "train": {"steps": 1, "batch_size": 2, "num_threads": 1, "precision": "fp32"},
            }
        )
    )
    common = ["pretrain", "--preset", str(preset), "--data", str(audio_dir), "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "hard")]) == 2
    assert "data.group_by='instrumentation' needs a manifest.csv" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "off"), "--set", "data.group_by="]) == 0
    run = json.loads((tmp_path / "off" / "run.json").read_text())
    assert run["config"]["data"]["group_by"] == ""


def test_a_wrong_value_on_the_command_line_says_how_to_write_it(
    audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = load_config("smoke").train.batch_size
    args = ["pretrain", "--preset", "smoke", "--data", str(audio_dir), "--out", str(tmp_path)]
    assert main([*args, "--set", "train.batch_size="]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.batch_size' in the overrides expects an int, got ''" in err
    assert err.endswith(f"e.g. --set train.batch_size={batch}") and len(err.splitlines()) == 1


def test_manifest_with_missing_files(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("audio,split\nnot_there.wav,train\nalso_gone.wav,train\n")
    proc = _run_cli("pretrain", "--data", str(manifest), "--out", str(tmp_path / "r"), check=False)
    assert (
        proc.returncode == 2 and "not_there.wav" in proc.stderr and "Traceback" not in proc.stderr
    )


@pytest.mark.slow  # two pretraining runs in subprocesses
def test_bad_audio_in_pool(audio_dir: Path, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    for f in sorted(audio_dir.glob("*.wav"))[:3]:
        (pool / f.name).write_bytes(f.read_bytes())
    (pool / "broken.wav").write_bytes(b"garbage")
    proc = _run_cli(
        "pretrain",
        "--data",
        str(pool),
        "--out",
        str(tmp_path / "r"),
        *sum((["--set", o] for o in TINY), []),
        "--set",
        "data.skip_unreadable=false",
        check=False,
    )
    assert proc.returncode == 2 and "broken.wav" in proc.stderr
    assert "data.skip_unreadable" in proc.stderr  # the message names the way out

    # by default an unreadable file is left out, listed and counted; the run goes on
    proc = _run_cli(
        "pretrain",
        "--preset",
        "smoke",
        "--data",
        str(pool),
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        *sum((["--set", o] for o in [*TINY, "train.steps=2", "train.batch_size=2", FP32]), []),
    )
    assert "1 of 4 audio files could not be decoded" in proc.stderr
    with open(tmp_path / "r" / "skipped_files.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["file"]).name for r in rows] == ["broken.wav"] and rows[0]["reason"]
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["data"]["tracks"] == 3 and run["data"]["skipped_unreadable"] == 1


@pytest.mark.slow  # a torchrun run of two processes, and one of one
def test_torchrun_two_ranks_match_single_process(audio_dir: Path, tmp_path: Path) -> None:
    """Two gloo ranks each see half of the batch; the global loss and weights match one
    process on the whole batch (fp32, so only summation order differs)."""
    common = [
        "pretrain",
        "--preset",
        "smoke",
        "--data",
        str(audio_dir),
        "--no-progress",
        "--set",
        "train.steps=4",
        "--set",
        "train.num_threads=1",
        "--set",
        "train.precision=fp32",
        "--set",
        "train.device=cpu",
    ]
    _run_cli(*common, "--out", str(tmp_path / "one"))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "vit1d",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    logs = {}
    for name in ("one", "two"):
        with open(tmp_path / name / "log.csv") as fh:
            logs[name] = [float(r["loss"]) for r in csv.DictReader(fh)]
    np.testing.assert_allclose(logs["two"], logs["one"], rtol=1e-4)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)


def test_snapshots_for_emergence_curves(audio_dir: Path, tmp_path: Path) -> None:
    from vit1d.pretrain.run_files import snapshot_folders

    out = pretrain(
        "smoke",
        audio_dir,
        tmp_path / "run",
        progress=False,
        overrides={
            "train": {"steps": 8, "checkpoint_every": 8, "snapshot_fractions": [0.25, 0.5, 1.0]},
            "model": {"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]},
        },
    )
    snaps = snapshot_folders(out)
    assert [s for s, _ in snaps] == [2, 4, 8]
    final = load_file(str(out / "model.safetensors"))
    last = load_file(str(snaps[-1][1] / "model.safetensors"))
    first = load_file(str(snaps[0][1] / "model.safetensors"))
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert not all(torch.equal(final[k], first[k]) for k in final)
    assert load_pretrained(snaps[0][1]).config["dim"] == 32


def test_resume_keeps_the_precision_the_run_started_with(
    audio_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    import json

    from vit1d.pretrain import train

    over = {
        "train": {"steps": 4, "checkpoint_every": 2, "num_threads": 1},
        "model": {"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]},
    }
    monkeypatch.setattr(train, "choose_precision", lambda device, pref: "fp32")
    out = pretrain("smoke", audio_dir, tmp_path / "run", progress=False, overrides=over)
    # pretend the run was interrupted after step 2, then resumed where `auto` now says bf16
    ckpts = out / "checkpoints"
    (ckpts / "latest").write_text("step-00000002\n")
    (out / "model.safetensors").unlink()
    monkeypatch.setattr(train, "choose_precision", lambda device, pref: "bf16")
    pretrain("smoke", audio_dir, out, progress=False, overrides=over)
    record = json.loads((out / "run.json").read_text())
    assert record["precision"] == "fp32"
    assert record["adamw_fused"] is False  # fused only on a GPU


def test_recipe_switches_train_and_resume_exactly(
    audio_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hard negatives and augmentations are pure functions of (seed, step): a run that dies
    mid-way and is resumed ends with the weights of an uninterrupted one."""
    import vit1d.pretrain.train as train_mod

    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["audio", "instrumentation"])
        w.writerows(
            [
                [str(p), "flute" if i % 2 else "oboe"]
                for i, p in enumerate(sorted(audio_dir.glob("*.wav")))
            ]
        )
    sets = TINY + [
        "data.group_by=instrumentation",
        "augment.gain_db=6",
        "augment.eq_db=10",
        "augment.noise_snr_db=30",
        "train.batch_size=4",
        "train.steps=6",
        "train.checkpoint_every=3",
        "train.precision=fp32",
    ]
    full = pretrain("smoke", manifest, tmp_path / "full", overrides=sets, progress=False)
    plain = pretrain(
        "smoke",
        manifest,
        tmp_path / "plain",
        overrides=TINY + sets[len(TINY) + 4 :],
        progress=False,
    )
    real = train_mod.augment_views

    def dies_at_step_4(views, cfg, seed, step):
        if step == 4:
            raise KeyboardInterrupt
        return real(views, cfg, seed, step)

    monkeypatch.setattr(train_mod, "augment_views", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain("smoke", manifest, tmp_path / "cut", overrides=sets, progress=False)
    monkeypatch.setattr(train_mod, "augment_views", real)
    cut = pretrain("smoke", manifest, tmp_path / "cut", overrides=sets, progress=False)
    a = load_file(str(full / "model.safetensors"))
    b = load_file(str(cut / "model.safetensors"))
    c = load_file(str(plain / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the switches change training


def test_prefetching_batches_changes_no_weight(
    audio_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker thread that builds the next batch on GPUs (train.prefetch=thread here, on a CPU)
    ends with the weights of the inline loop, and an error in the worker reaches the caller."""
    import vit1d.pretrain.train as train_mod

    sets = TINY + [
        "augment.gain_db=6",
        "augment.noise_snr_db=30",
        "train.batch_size=4",
        "train.steps=5",
        "train.precision=fp32",
    ]
    inline = pretrain(
        "smoke",
        audio_dir,
        tmp_path / "off",
        overrides=[*sets, "train.prefetch=inline"],
        progress=False,
    )
    ahead = pretrain(
        "smoke",
        audio_dir,
        tmp_path / "on",
        overrides=[*sets, "train.prefetch=thread"],
        progress=False,
    )
    a = load_file(str(inline / "model.safetensors"))
    b = load_file(str(ahead / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)

    real = train_mod.augment_views

    def fails_at_step_3(views, cfg, seed, step):
        if step == 3:
            raise ValueError("planted failure in the batch worker")
        return real(views, cfg, seed, step)

    monkeypatch.setattr(train_mod, "augment_views", fails_at_step_3)
    with pytest.raises(ValueError, match="planted failure"):
        pretrain(
            "smoke",
            audio_dir,
            tmp_path / "fails",
            overrides=[*sets, "train.prefetch=thread"],
            progress=False,
        )
    with pytest.raises(Exception, match="train.prefetch"):
        pretrain(
            "smoke",
            audio_dir,
            tmp_path / "bad",
            overrides=[*sets, "train.prefetch=yes"],
            progress=False,
        )


def test_a_non_finite_loss_stops_the_run_before_any_checkpoint_holds_it(
    audio_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss is checked once the step is done (no host sync inside it); the error names
    the step and the way out, and the checkpoints on disk are those of the steps before."""
    from vit1d.pretrain.objectives import Contrastive

    real = Contrastive.loss

    def loss_nan_at_step_3(self, step_fn, views, n, step):
        value = real(self, step_fn, views, n, step)
        return value * float("nan") if step == 3 else value

    monkeypatch.setattr(Contrastive, "loss", loss_nan_at_step_3)
    over = {
        "train": {"steps": 6, "checkpoint_every": 1, "num_threads": 1, "precision": "fp32"},
        "model": {"dim": 32, "depth": 1, "heads": 2, "head_dims": [32]},
    }
    with pytest.raises(RuntimeError, match=r"loss became nan at step 3; lower optim.lr"):
        pretrain("smoke", audio_dir, tmp_path / "run", progress=False, overrides=over)
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-00000003"  # steps 0-2 done
    with open(tmp_path / "run" / "log.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    state = load_file(str(ckpts / "step-00000003" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in state.values())

"""The exact probe solver, ``ProbeConfig(solver="lbfgs")``: each probe ends at the minimiser
of ``mean loss + l2 ||W||^2`` that independent references find (scikit-learn, SciPy), keeps the
L2 weight of lowest validation loss, and scores as well as Adam's probes within seed noise.
It is the default; Adam's protocol stays an option."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from vit1d.cli import probe as probe_cli
from vit1d.probing import probe as probe_module
from vit1d.probing.linear import LinearProbes, ProbeConfig
from vit1d.probing.probe import probe_task
from vit1d.probing.tasks import SPECS, Example, Task


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _standardised(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    ref = x if ref is None else ref
    return ((x - ref.mean(0)) / ref.std(0)).astype(np.float32)


def _features(y: np.ndarray, dim: int, signal: float, seed: int, rng: np.random.Generator):
    """Rows ``signal * prototype[y] + noise``, mixed by a fixed random matrix (correlated
    features, as in a network's layers); ``y`` class numbers or multi-hot rows."""
    frozen = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1 if y.ndim == 1 else y.shape[1]
    proto = frozen.standard_normal((n_classes, dim))
    mix = frozen.standard_normal((dim, dim)) / np.sqrt(dim)
    code = proto[y] if y.ndim == 1 else y @ proto
    return (signal * code + rng.standard_normal((len(y), dim))) @ mix + 2.0


def _softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probs(probes: LinearProbes, x: np.ndarray, g: int) -> np.ndarray:
    with torch.no_grad():
        return _softmax_np(probes.logits(torch.from_numpy(x), [g])[0].double().numpy())


# ---------------------------------------------------------------------------- the minimiser


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_softmax_matches_sklearn_multinomial_logistic_regression(l2: float) -> None:
    """sklearn minimises ``sum_n loss_n + ||W||^2 / (2C)`` (intercept unpenalised); divided
    by ``C N`` that is ``mean_n loss_n + ||W||^2 / (2 C N)``: ours with ``C = 1/(2 l2 N)``,
    ``N`` the rows whose target is not ignored. Probes sharing a stack each reach their own
    view's solution."""
    rng = np.random.default_rng(0)
    n, d, c = 240, 6, 4
    y = rng.integers(0, c, n)
    xs = [_standardised(_features(y, d, s, 10 + k, rng)) for k, s in enumerate((0.8, 1.5))]
    y_train = y.copy()
    y_train[rng.random(n) < 0.1] = -1  # ignored targets
    keep = y_train >= 0
    x_t = torch.from_numpy(np.stack(xs))
    probes = LinearProbes([0, 1, 0], [3, 4, 5], d, c, "softmax")
    cfg = ProbeConfig(solver="lbfgs", l2=(l2,), max_iter=500)
    probes.fit(x_t, torch.from_numpy(y_train), x_t, torch.from_numpy(y), cfg)
    np.testing.assert_array_equal(probes.chosen_l2, [l2] * 3)
    for g, v in enumerate([0, 1, 0]):
        x64 = xs[v].astype(np.float64)
        ref = LogisticRegression(C=1.0 / (2 * l2 * keep.sum()), tol=1e-10, max_iter=10_000)
        ref.fit(x64[keep], y_train[keep])
        w, b = probes.weight[g].double().numpy(), probes.bias[g].double().numpy()
        # the weights are unique (the penalty picks rows summing to zero, as sklearn's do);
        # the biases only up to a common shift, which softmax ignores
        np.testing.assert_allclose(w, ref.coef_.T, atol=1e-3)
        np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-3)
        np.testing.assert_allclose(_probs(probes, xs[v], g), ref.predict_proba(x64), atol=1e-3)


def _bce_objective(theta: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float, pw: float):
    """``mean BCE(x W + b, y)`` with positive weight ``pw``, plus ``l2 ||W||^2``, and its
    gradient, in float64."""
    d, c = x.shape[1], y.shape[1]
    w, b = theta[: d * c].reshape(d, c), theta[d * c :]
    z = x @ w + b
    # -[pw y log s(z) + (1 - y) log(1 - s(z))] = pw y softplus(-z) + (1 - y) softplus(z)
    loss = pw * y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)
    s = 1 / (1 + np.exp(-z))
    dz = (-pw * y * (1 - s) + (1 - y) * s) / z.size
    value = loss.mean() + l2 * (w**2).sum()
    grad = np.concatenate([(x.T @ dz + 2 * l2 * w).ravel(), dz.sum(0)])
    return value, grad


@pytest.mark.parametrize("frames", [False, True])
def test_sigmoid_matches_scipy_on_the_numpy_objective(frames: bool) -> None:
    """Multi-label targets ``(N, C)`` (tagging), or one activation per row ``(N,)`` as the
    beat and onset frames have, with a positive weight."""
    rng = np.random.default_rng(1)
    n, d, c, l2, pw = 200, 5, 1 if frames else 3, 1e-2, 2.5
    y = rng.choice([0.0, 0.5, 1.0], size=(n, c), p=[0.6, 0.15, 0.25])
    x = _standardised(_features(y, d, 1.0, 20, rng))
    x_t = torch.from_numpy(x)[None]
    probes = LinearProbes([0], [7], d, c, "sigmoid", pos_weight=pw)
    cfg = ProbeConfig(solver="lbfgs", l2=(l2,), max_iter=500)
    y_t = torch.from_numpy(y.astype(np.float32))
    if frames:
        y_t = y_t[:, 0]
    probes.fit(x_t, y_t, x_t, y_t, cfg)
    ref = scipy.optimize.minimize(
        _bce_objective,
        np.zeros(d * c + c),
        args=(x.astype(np.float64), y, l2, pw),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
    )
    np.testing.assert_allclose(probes.weight[0].numpy(), ref.x[: d * c].reshape(d, c), atol=1e-3)
    np.testing.assert_allclose(probes.bias[0].numpy(), ref.x[d * c :], atol=1e-3)


# ---------------------------------------------------------------------------- choosing l2


def test_the_l2_kept_is_the_one_of_lowest_validation_loss() -> None:
    """Few training rows and many features: the validation loss has its minimum inside the
    grid, in a different place for a weak and a strong view; each probe keeps that L2 weight
    (found here by sklearn at every L2 weight) and its weights."""
    rng = np.random.default_rng(2)
    d, c, grid = 20, 3, (1e-3, 1e-2, 1e-1, 1.0)
    y_tr, y_va = rng.integers(0, c, 60), rng.integers(0, c, 400)
    xs_tr, xs_va = [], []
    for k, signal in enumerate((0.4, 1.2)):
        raw_tr = _features(y_tr, d, signal, 30 + k, rng)
        raw_va = _features(y_va, d, signal, 30 + k, rng)
        xs_tr.append(_standardised(raw_tr))
        xs_va.append(_standardised(raw_va, raw_tr))
    views, seeds = [0, 0, 1, 1], [0, 1, 0, 1]
    probes = LinearProbes(views, seeds, d, c, "softmax")
    cfg = ProbeConfig(solver="lbfgs", l2=grid, max_iter=300)
    xtr, xva = torch.from_numpy(np.stack(xs_tr)), torch.from_numpy(np.stack(xs_va))
    probes.fit(xtr, torch.from_numpy(y_tr), xva, torch.from_numpy(y_va), cfg)
    kept = probes.valid_loss(xva, torch.from_numpy(y_va)).numpy()
    chosen = []
    for v in (0, 1):
        losses = []
        for l2 in grid:
            ref = LogisticRegression(C=1.0 / (2 * l2 * len(y_tr)), tol=1e-10, max_iter=10_000)
            ref.fit(xs_tr[v].astype(np.float64), y_tr)
            p = ref.predict_proba(xs_va[v].astype(np.float64))
            losses.append(-np.log(p[np.arange(len(y_va)), y_va]).mean())
        order = np.argsort(losses)
        assert losses[order[1]] - losses[order[0]] > 1e-3  # a clear winner to find
        best = grid[order[0]]
        chosen.append(best)
        for g in (2 * v, 2 * v + 1):
            assert probes.chosen_l2[g] == best
            assert kept[g] == pytest.approx(losses[order[0]], abs=1e-4)
            assert 0 < probes.best_epoch[g] <= probes.epochs_run
    assert chosen[0] != chosen[1]  # the test exercises a choice, not one end of the grid
    assert chosen[0] not in (grid[0], grid[-1]) or chosen[1] not in (grid[0], grid[-1])


# ---------------------------------------------------------------------------- against Adam


def _metrics(loss: str, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if loss == "softmax":
        return {"accuracy": float((logits.argmax(1) == y).mean())}
    return {
        "accuracy": float(((logits > 0) == (y > 0.5)).mean()),
        "roc_auc": float(roc_auc_score(y, logits, average="macro")),
    }


# the smallest difference counted as noise, however alike Adam's seeds happen to be
FLOOR = {"accuracy": 0.01, "roc_auc": 0.005}


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_lbfgs_scores_within_seed_noise_of_adam_or_better(loss: str) -> None:
    """Three views (weak, middling, stronger class structure) and three seeds, few training
    rows for the dimension (as on small music datasets: early stopping matters), Adam with
    its default protocol. On valid and test, the exact probes' mean score is at least Adam's
    mean minus the seed noise: three standard deviations of Adam's seeds, floored (``FLOOR``;
    2000 evaluation rows keep the metrics' own sampling noise below it)."""
    rng = np.random.default_rng(3)
    d, seeds, sizes = 48, (0, 1, 2), {"train": 500, "valid": 2000, "test": 2000}
    n_out = 6 if loss == "softmax" else 5
    if loss == "softmax":
        y = {s: rng.integers(0, n_out, n) for s, n in sizes.items()}
    else:
        y = {s: (rng.random((n, n_out)) < 0.3).astype(np.float32) for s, n in sizes.items()}
    x: dict[str, list[np.ndarray]] = {s: [] for s in sizes}
    signals = (0.15, 0.25, 0.4)
    for k, signal in enumerate(signals):
        raw = {s: _features(y[s], d, signal, 40 + k, rng) for s in sizes}
        for s in sizes:
            x[s].append(_standardised(raw[s], raw["train"]))
    xt = {s: torch.from_numpy(np.stack(x[s])) for s in sizes}
    yt = {s: torch.from_numpy(y[s]) for s in sizes}
    views = [v for v in range(len(signals)) for _ in seeds]
    fitted = {}
    for solver in ("adam", "lbfgs"):
        probes = LinearProbes(views, list(seeds) * len(signals), d, n_out, loss)
        probes.fit(xt["train"], yt["train"], xt["valid"], yt["valid"], ProbeConfig(solver=solver))
        fitted[solver] = probes
    for split in ("valid", "test"):
        for v in range(len(signals)):
            groups = [g for g, gv in enumerate(views) if gv == v]
            scores = {}
            for solver, probes in fitted.items():
                with torch.no_grad():
                    out = probes.logits(xt[split][v], groups).numpy()
                scores[solver] = [_metrics(loss, o, y[split]) for o in out]
            for metric in scores["adam"][0]:
                adam = np.array([s[metric] for s in scores["adam"]])
                exact = np.array([s[metric] for s in scores["lbfgs"]])
                noise = max(3 * adam.std(ddof=1), FLOOR[metric])
                assert exact.mean() >= adam.mean() - noise, (split, v, metric, adam, exact)


# ---------------------------------------------------------------------------- defaults, records


def test_default_is_exact_adam_is_unchanged_and_an_unknown_solver_raises() -> None:
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((2, 200, 6)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 3, 200))
    cfg = ProbeConfig(solver="adam", max_epochs=3, steps_per_epoch=5)
    assert ProbeConfig().solver == "lbfgs"
    via_fit = LinearProbes([0, 1], [0, 1], 6, 3, "softmax")
    via_fit.fit(x, y, x[:, :50], y[:50], cfg)
    direct = LinearProbes([0, 1], [0, 1], 6, 3, "softmax")
    direct._fit(x, y, x[:, :50], y[:50], cfg, None)
    assert torch.equal(via_fit.weight, direct.weight) and torch.equal(via_fit.bias, direct.bias)
    assert np.isnan(via_fit.chosen_l2).all()
    with pytest.raises(ValueError, match="unknown probe solver 'sgd'"):
        via_fit.fit(x, y, x, y, ProbeConfig(solver="sgd"))
    with pytest.raises(ValueError, match="L2 weights"):
        via_fit.fit(x, y, x, y, ProbeConfig(solver="lbfgs", l2=()))


class _Pooled:
    """The part of :class:`vit1d.features.cache.Embeddings` a global task's probes read."""

    def __init__(self, paths: list[Path], x: np.ndarray) -> None:
        self.paths, self._x = paths, x.astype(np.float32)
        self.layers, self.poolings = [0, 1], ["cls", "avg"]
        self.dim = self.frame_dim = x.shape[1]
        self.n_frames = np.ones(len(paths), dtype=int)

    def pooled(self, layer: int, pooling: str, indices=None) -> np.ndarray:
        x = self._x * (layer + 1) + (pooling == "avg")
        return x if indices is None else x[np.asarray(indices)]


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_results_record_the_solver_and_the_chosen_l2(solver: str) -> None:
    rng = np.random.default_rng(5)
    names = ["flute", "oboe", "viola"]
    codes = rng.integers(0, 3, 100)
    splits = ["train"] * 60 + ["valid"] * 20 + ["test"] * 20
    exs = [
        Example(Path(f"/fake/i{i}.wav"), s, names[k])
        for i, (s, k) in enumerate(zip(splits, codes, strict=True))
    ]
    task = Task(
        "instrument", SPECS["instrument"], Path("/fake/instrument/manifest.csv"), exs, names
    )
    emb = _Pooled([e.audio for e in exs], _features(codes, 8, 1.0, 50, rng))
    cfg = ProbeConfig(solver=solver, max_epochs=3, steps_per_epoch=5, n_boot=50, max_iter=50)
    result = probe_task(task, [emb], seeds=(0, 1), config=cfg)
    info = result["info"]
    assert info["solver"] == solver
    # the exact solution does not depend on the seed: one fit per view (fit_seeds)
    n_seeds = 2 if solver == "adam" else 1
    assert len(info["best_epoch"]) == 2 * 2 * n_seeds  # layers x poolings x seeds
    assert {r["seed"] for r in result["rows"]} == set(range(n_seeds))
    if solver == "adam":
        assert "l2" not in info
    else:
        assert set(info["l2"]) == set(info["best_epoch"])
        assert set(info["l2"].values()) <= set(cfg.l2)


def test_cli_solver_flag_reaches_the_probe_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parser = argparse.ArgumentParser()
    probe_cli.register(parser.add_subparsers())
    assert parser.parse_args(["probe"]).solver == "lbfgs"
    with pytest.raises(SystemExit):
        parser.parse_args(["probe", "--solver", "sgd"])
    seen = {}

    def fake_probe_corpus(data, out, **kwargs):
        seen["config"] = kwargs["config"]
        return {"probes": "p", "summary": "s"}

    monkeypatch.setattr(probe_cli, "probe_corpus", fake_probe_corpus)
    args = parser.parse_args(["probe", "--data", str(tmp_path), "--solver", "adam"])
    assert args.func(args) == 0
    assert seen["config"].solver == "adam"


@pytest.mark.parametrize("memory_mb", [1024, 0])
def test_batched_blocks_give_every_groups_loss(memory_mb: int) -> None:
    """The exact solver's batched products (:meth:`LinearProbes.view_blocks`): views read by
    three groups and a view read by one, in one block each or cut to one view per block
    (``memory_mb=0``), give each group the mean cross-entropy NumPy computes for it."""
    rng = np.random.default_rng(7)
    n, d, c = 40, 5, 4
    x = rng.standard_normal((3, n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    views, seeds = [0, 0, 0, 1, 1, 1, 2], [0, 1, 2, 0, 1, 2, 5]
    probes = LinearProbes(views, seeds, d, c, "softmax")
    blocks = probes.view_blocks(n, memory_mb)
    assert sorted(g for _, idx in blocks for g in idx.flatten().tolist()) == list(range(7))
    assert len(blocks) == (2 if memory_mb else 3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for vs, idx in blocks:
        got = probes._block_loss(xt, yt, probes.weight, probes.bias, vs, idx).numpy()
        for k, g in enumerate(idx.flatten().tolist()):
            z = x[views[g]].astype(float) @ probes.weight[g].double().numpy()
            z = z + probes.bias[g].double().numpy()
            ref = -np.log(_softmax_np(z)[np.arange(n), y]).mean()
            assert got[k] == pytest.approx(ref, rel=1e-5)


def test_exact_probes_do_not_depend_on_the_seed_so_one_is_fitted() -> None:
    """Why :func:`vit1d.probing.probe.fit_seeds` fits one seed with the exact solver: two starting
    points reach the same probe (logits equal to the solver's tolerance), unlike Adam's; with
    one feature source per seed (random init) each seed is still fitted."""
    rng = np.random.default_rng(6)
    y = rng.integers(0, 4, 400)
    x = torch.from_numpy(_standardised(_features(y, 16, 0.5, 60, rng))[None])
    yt = torch.from_numpy(y)
    cfg = ProbeConfig(solver="lbfgs", l2=(1e-2,), max_iter=200)
    probes = LinearProbes([0, 0], [0, 1], 16, 4, "softmax")
    probes.fit(x[:, :300], yt[:300], x[:, 300:], yt[300:], cfg)
    # the softmax is unchanged by a constant added to every class's bias (not penalised), so
    # the probes are compared by their probabilities
    with torch.no_grad():
        a, b = probes.logits(x[0, 300:], [0, 1]).softmax(-1).numpy()
    assert np.abs(a - b).max() < 1e-3
    adam = LinearProbes([0, 0], [0, 1], 16, 4, "softmax")
    adam.fit(x[:, :300], yt[:300], x[:, 300:], yt[300:], ProbeConfig(solver="adam", max_epochs=2))
    with torch.no_grad():
        a, b = adam.logits(x[0, 300:], [0, 1]).softmax(-1).numpy()
    assert np.abs(a - b).max() > 1e-2
    assert probe_module.fit_seeds("lbfgs", 1, (0, 1, 2)) == [0]
    assert probe_module.fit_seeds("lbfgs", 3, (0, 1, 2)) == [0, 1, 2]
    assert probe_module.fit_seeds("adam", 1, (0, 1, 2)) == [0, 1, 2]

"""The claims about what the analyses found: attention heads that track onsets (C3), layers whose
self-similarity follows harmony, timbre, loudness and rhythm in the paper's order (C4), and
chord changes read from self-similarity novelty (C4b)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vit1d.ledger.evidence import Inputs
from vit1d.ledger.verdicts import (
    RULES,
    SSM_DIMENSIONS,
    STATEMENTS,
    Claim,
    Comparison,
    majority,
    paired_bootstrap,
)


def _eval_split(df: Any) -> Any:
    """The rows of the evaluation split (``test`` when present)."""
    if df is None or df.empty or "split" not in df.columns:
        return df
    splits = set(df["split"].astype(str))
    return df[df["split"] == ("test" if "test" in splits else sorted(splits)[-1])]


def _per_unit(df: Any, keys: Sequence[str], value: str) -> Any:
    """``value`` indexed by ``keys`` (the paired units)."""
    return df.groupby(list(keys))[value].mean()


def _paired(
    claim: str,
    name: str,
    a: Any,
    b: Any,
    a_label: str,
    b_label: str,
    unit: str,
    seed: int = 0,
) -> Comparison | None:
    """A paired-bootstrap comparison of two per-unit Series (joined on their index)."""
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner").dropna()
    if joined.empty:
        return None
    d, lo, hi = paired_bootstrap(joined["a"] - joined["b"], seed=seed)
    return Comparison(
        claim,
        name,
        a_label,
        b_label,
        float(joined["a"].mean()),
        float(joined["b"].mean()),
        d,
        lo,
        hi,
        f"paired bootstrap over {len(joined)} test {unit}",
    )


def claim_c3(inp: Inputs) -> Claim:
    comps: list[Comparison] = []
    notes: list[str] = []
    if inp.onsets is not None and inp.onsets_summary is not None:
        per = _eval_split(inp.onsets)
        summ = inp.onsets_summary

        def best(model: str) -> tuple[Any, str] | None:
            s = summ[summ["model"] == model]
            if s.empty:
                return None
            col = "f_valid" if "f_valid" in s and s["f_valid"].notna().any() else "f"
            r = s.loc[s[col].astype(float).idxmax()]
            sel = per[
                (per["model"] == model)
                & (per["method"] == r["method"])
                & (per["layer"] == r["layer"])
                & (per["head"].astype(str) == str(r["head"]))
            ]
            label = (
                f"{model} {r['method']} layer {int(r['layer'])} head {r['head']}"
                if model in ("trained", "random")
                else model.replace("_", " ")
            )
            return _per_unit(sel, ["clip"], "f"), label

        trained = best("trained")
        if trained is not None:
            for other in ("random", "spectral_flux", "chance"):
                b = best(other)
                if b is None:
                    continue
                name = {"random": "vs random init"}.get(other, f"vs {other.replace('_', ' ')}")
                c = _paired("C3", name, trained[0], b[0], trained[1], b[1], "clips")
                if c is not None:
                    comps.append(c)
    verdict, reason = majority(comps, required=["vs random init"])
    return Claim(
        "C3",
        STATEMENTS["C3"],
        "onsets.csv, onsets_summary.csv (vit1d analyses, attention chapter): onset F "
        "(50 ms) of attention curves per "
        "test clip, best curve chosen on validation clips",
        RULES["C3"],
        verdict,
        reason,
        comps,
        notes,
    )


def _ssm_units(ssm: Any) -> Any:
    df = _eval_split(ssm).copy()
    df["above"] = df["score"].astype(float) - df["chance"].astype(float)
    return df


def _best_layer(df: Any, model: str, dimension: str) -> int | None:
    s = df[(df["model"] == model) & (df["dimension"] == dimension)]
    if s.empty:
        return None
    return int(s.groupby("layer")["above"].mean().idxmax())


def _layer_series(df: Any, model: str, dimension: str, layer: int) -> Any:
    s = df[(df["model"] == model) & (df["dimension"] == dimension) & (df["layer"] == layer)]
    return _per_unit(s, ["clip", "window"], "above")


def crossings(
    items: Sequence[str],
    best: dict[str, int],
    compare: Any,
    group: dict[str, str] | None = None,
) -> tuple[list[Comparison], list[tuple[str, str]]]:
    """Comparisons ``X at l_X minus X at l_Y`` for every pair of items with different best
    layers (and different groups, when given), and the pairs that cross (both for)."""
    comps, crossing = [], []
    done: dict[tuple[str, int, int], Comparison | None] = {}
    for i, x in enumerate(items):
        for y in items[i + 1 :]:
            if best[x] == best[y] or (group and group.get(x) == group.get(y)):
                continue
            pair = []
            for u, lu, lv, v in ((x, best[x], best[y], y), (y, best[y], best[x], x)):
                key = (u, lu, lv)
                if key not in done:
                    done[key] = compare(u, lu, lv, v)
                    if done[key] is not None:
                        done[key].primary = False
                        comps.append(done[key])
                pair.append(done[key])
            if all(c is not None and c.outcome == "for" for c in pair):
                if not crossing:  # the first crossing found is shown in the ledger
                    for c in pair:
                        c.primary = True
                crossing.append((x, y))
    return comps, crossing


def claim_c4(inp: Inputs) -> Claim:
    comps_a: list[Comparison] = []
    comps_b: list[Comparison] = []
    notes: list[str] = []
    crossing: list[tuple[str, str]] = []
    best: dict[str, int] = {}
    if inp.ssm is not None and not inp.ssm.empty:
        df = _ssm_units(inp.ssm)
        groups = df.drop_duplicates("dimension").set_index("dimension")["group"].to_dict()
        dims = [d for d in SSM_DIMENSIONS if d in set(df["dimension"])]
        for dim in dims:
            lt, lr = _best_layer(df, "trained", dim), _best_layer(df, "random", dim)
            if lt is None:
                continue
            best[dim] = lt
            if lr is None:
                continue
            c = _paired(
                "C4",
                f"{dim} vs random init",
                _layer_series(df, "trained", dim, lt),
                _layer_series(df, "random", dim, lr),
                f"trained layer {lt}",
                f"random layer {lr}",
                "windows",
            )
            if c is not None:
                comps_a.append(c)

        def compare(u: str, lu: int, lv: int, v: str) -> Comparison | None:
            return _paired(
                "C4",
                f"{u}: layer {lu} (best) vs layer {lv} (best for {v})",
                _layer_series(df, "trained", u, lu),
                _layer_series(df, "trained", u, lv),
                f"layer {lu}",
                f"layer {lv}",
                "windows",
            )

        comps_b, crossing = crossings(list(best), best, compare, groups)
        notes.append("best layers: " + ", ".join(f"{d} {lay}" for d, lay in best.items()))
    va, ra = majority(comps_a)
    if va == "inconclusive" and ra == "no results":
        verdict, reason = va, ra
    elif va == "does not hold":
        verdict, reason = va, f"(a) vs random init: {ra}"
    elif best and len(set(best.values())) == 1:
        verdict = "does not hold"
        reason = f"every dimension peaks at layer {next(iter(best.values()))}; (a): {ra}"
    elif va == "holds" and crossing:
        x, y = crossing[0]
        verdict = "holds"
        reason = f"(a): {ra}; layers cross on {x} (layer {best[x]}) and {y} (layer {best[y]})"
    else:
        what = "a crossing" if crossing else "no crossing of best layers"
        verdict, reason = "inconclusive", f"(a): {ra}; (b): {what}"
    return Claim(
        "C4",
        STATEMENTS["C4"],
        "ssm.csv (vit1d analyses, self-similarity chapter): Spearman score of each "
        "layer's token SSM against reference SSMs "
        "(minus shuffled chance) per test window, trained vs random init",
        RULES["C4"],
        verdict,
        reason,
        comps_a + comps_b,
        notes,
    )


def claim_c4b(inp: Inputs) -> Claim:
    comps: list[Comparison] = []
    if inp.novelty is not None and not inp.novelty.empty:
        df = _eval_split(inp.novelty)

        def best(model: str) -> tuple[Any, str] | None:
            s = df[df["model"] == model]
            if s.empty:
                return None
            layer = int(s.groupby("layer")["f"].mean().idxmax())
            label = f"{model} layer {layer}" if model in ("trained", "random") else model
            return _per_unit(s[s["layer"] == layer], ["clip"], "f"), label

        trained = best("trained")
        if trained is not None:
            for other in ("random", "chroma", "chance"):
                b = best(other)
                if b is None:
                    continue
                name = "vs random init" if other == "random" else f"vs {other}"
                c = _paired("C4b", name, trained[0], b[0], trained[1], b[1], "clips")
                if c is not None:
                    comps.append(c)
    verdict, reason = majority(comps, required=["vs random init"])
    return Claim(
        "C4b",
        STATEMENTS["C4b"],
        "novelty.csv (vit1d analyses, self-similarity chapter): chord-change F (0.5 s) "
        "of SSM novelty per test clip",
        RULES["C4b"],
        verdict,
        reason,
        comps,
    )

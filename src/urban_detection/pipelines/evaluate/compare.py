"""The comparison node: the run's experiments side by side, each value with its trip-bootstrap
interval, and each experiment against a reference by paired bootstrap with a verdict.

Inputs are each experiment's ``<name>.metrics`` (``metrics.json``) and ``<name>.bootstrap_draws``
(one row per split and trip draw). Val chose the exported checkpoint (the *selection set*), so
its numbers are optimistic: they are labelled so, and verdicts and the headline use test only.
"""
from __future__ import annotations

import logging

import pandas as pd

from urban_detection.detection.evaluate import HEADLINE
from urban_detection.detection.provenance import short

log = logging.getLogger(__name__)

SELECTION_SPLIT = "val"  # the split whose frames choose the exported checkpoint (train.val_coco_frames)


def flat_split_metrics(split_doc: dict) -> dict[str, float | None]:
    """The numbers of one split of a ``metrics.json``: COCO metrics, AP after the large-box filter
    (mAP, AP50, AP75, per-class AP), losses."""
    from urban_detection.detection.evaluate import FILTERED_PREFIX, REPORT_ORDER

    flat = dict(split_doc.get("metrics") or {})
    filtered = (split_doc.get("large_box_filter") or {}).get("metrics") or {}
    flat.update({FILTERED_PREFIX + k: v for k, v in filtered.items() if FILTERED_PREFIX + k in REPORT_ORDER})
    flat.update({k: v for k, v in (split_doc.get("losses") or {}).items() if k.startswith("loss/")})
    return flat


def split_intervals(split_doc: dict) -> dict[str, dict]:
    """``metric -> {"low", "high", ...}`` of a split of a ``metrics.json`` (empty without a bootstrap)."""
    return (split_doc.get("bootstrap") or {}).get("intervals") or {}


def compare_experiments(params: dict, *docs_and_draws):
    """All evaluated experiments side by side; ``docs_and_draws`` are every experiment's metrics doc, then
    every experiment's bootstrap draws, in the same order. Returns the table (CSV rows: split, metric,
    one column per experiment, its interval, and its paired difference from the reference with a
    verdict), its Markdown, the table as a figure, the PR curves, the headline (test) and the figure of
    the paired differences."""
    from urban_detection.detection.report import comparison_figure, comparison_table, pr_comparison_figure

    half = len(docs_and_draws) // 2
    metrics_docs, draw_tables = docs_and_draws[:half], docs_and_draws[half:]
    evaluated = [(d, t) for d, t in zip(metrics_docs, draw_tables) if d and d.get("evaluated")]
    docs = [d for d, _ in evaluated]
    draws = {d["experiment"]: t for d, t in evaluated}
    skipped = [d.get("experiment", "?") for d in metrics_docs if d and not d.get("evaluated")]
    params = params or {}
    splits = list(dict.fromkeys(s for s in params.get("splits") or ["val", "test"]))
    parts, curves = {}, {}
    for split in splits:
        by_exp = {d["experiment"]: flat_split_metrics(d["splits"][split]) for d in docs if split in d.get("splits", {})}
        if by_exp:
            parts[split] = comparison_table(by_exp)
            curves[split] = {d["experiment"]: d["splits"][split].get("pr_curves") or {}
                             for d in docs if split in d.get("splits", {})}
    table = (pd.concat(parts, names=["split", "metric"]) if parts
             else pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["split", "metric"])))
    reference = reference_experiment(params, docs)
    paired = paired_table(docs, draws, reference, [s for s in splits if s != SELECTION_SPLIT])
    notes = _notes(docs, skipped, reference)
    markdown = comparison_document(table, docs, paired, reference, notes)
    _log_paired(paired)
    log.info("comparison of %d experiment(s): %s", len(docs), ", ".join(d["experiment"] for d in docs) or "none")
    return (comparison_csv(table, docs, paired), markdown, comparison_figure(table), pr_comparison_figure(curves),
            headline_table(docs), paired_figure(paired))


def _log_paired(paired: pd.DataFrame) -> None:
    """The paired differences of the whole splits as metrics of the active MLflow run (the kedro run's):
    ``paired/<split>/<experiment>/<metric>/difference|ci95_low|ci95_high``."""
    import mlflow

    from urban_detection.tracking import log_metrics

    rows = paired[paired["slice"] == "all"] if len(paired) else paired
    if mlflow.active_run() is None or rows.empty:
        return
    numbers = {}
    for r in rows.itertuples():
        key = f"paired/{r.split}/{r.experiment}/{r.metric}"
        numbers.update({f"{key}/difference": r.difference, f"{key}/ci95_low": r.ci95_low,
                        f"{key}/ci95_high": r.ci95_high})
    log_metrics(numbers)


def reference_experiment(params: dict, docs: list[dict]) -> str | None:
    """``evaluate.reference``, else the first evaluated experiment; ``ValueError`` when it was not evaluated."""
    names = [d["experiment"] for d in docs]
    wanted = params.get("reference")
    if wanted and wanted not in names:
        raise ValueError(f"evaluate.reference {wanted!r} was not evaluated in this run (evaluated: {names}); "
                         "select it too, e.g. train.experiments=<name>+" + str(wanted))
    return wanted or (names[0] if names else None)


def slice_sections(split_doc: dict) -> dict[str, dict]:
    """``slice -> {"metrics", "intervals"}`` of a split: ``all`` (the whole split) and its trip slices."""
    boot = split_doc.get("bootstrap") or {}
    out = {"all": {"metrics": {**(boot.get("point") or {}), **(split_doc.get("metrics") or {})},
                   "intervals": boot.get("intervals") or {}}}
    out.update({name: {"metrics": s.get("metrics") or {}, "intervals": s.get("intervals") or {}}
                for name, s in (boot.get("slices") or {}).items()})
    return out


def paired_table(docs: list[dict], draws: dict[str, pd.DataFrame], reference: str | None,
                 splits: list[str]) -> pd.DataFrame:
    """One row per split, slice (``all`` or a trip slice), experiment (other than the reference) and metric
    with an interval: the difference from the reference, its paired-bootstrap interval and the verdict.
    Experiments scored on other trips or other draws than the reference are not paired (a warning says why)."""
    from urban_detection.detection.intervals import paired_differences

    columns = ["split", "slice", "metric", "experiment", "reference", "difference", "ci95_low", "ci95_high", "verdict"]
    ref_doc = next((d for d in docs if d["experiment"] == reference), None)
    rows = []
    for split in splits:
        ref_split = (ref_doc or {}).get("splits", {}).get(split) or {}
        ref_boot = ref_split.get("bootstrap")
        if not ref_boot:
            continue
        for d in docs:
            boot = (d["splits"].get(split) or {}).get("bootstrap")
            if d["experiment"] == reference or not boot:
                continue
            if any(boot.get(k) != ref_boot.get(k) for k in ("trips", "seed", "draws")):
                log.warning("%s %s: not paired with %s (other trips or trip draws)", d["experiment"], split, reference)
                continue
            ref_sections = slice_sections(ref_split)
            for name, section in slice_sections(d["splits"][split]).items():
                mine, theirs = (draws[n].loc[(draws[n]["split"] == split) & (draws[n].get("slice", "all") == name)]
                                for n in (d["experiment"], reference))
                metrics = [m for m in section["intervals"] if m in mine and m in theirs]
                if name not in ref_sections or len(mine) != len(theirs) or not metrics:
                    continue
                result = paired_differences({m: mine[m].to_numpy(float) for m in metrics},
                                            {m: theirs[m].to_numpy(float) for m in metrics},
                                            section["metrics"], ref_sections[name]["metrics"], level=ref_boot["level"])
                rows += [{"split": split, "slice": name, "metric": m, "experiment": d["experiment"],
                          "reference": reference, "difference": r["difference"], "ci95_low": r["low"],
                          "ci95_high": r["high"], "verdict": r["verdict"]} for m, r in result.items()]
    return pd.DataFrame(rows, columns=columns)


def comparison_csv(table: pd.DataFrame, docs: list[dict], paired: pd.DataFrame) -> pd.DataFrame:
    """The table's rows with, per experiment, ``<exp> ci95_low|high`` and, paired with the reference,
    ``<exp> - <ref>``, its ``ci95_low|high`` and ``<exp> verdict``."""
    out = table.reset_index()
    for d in docs:
        name = d["experiment"]
        if name not in out:
            continue
        for end in ("low", "high"):
            out[f"{name} ci95_{end}"] = [split_intervals(d["splits"].get(s) or {}).get(m, {}).get(end)
                                         for s, m in zip(out["split"], out["metric"])]
    whole = paired[paired["slice"] == "all"]
    for name, rows in whole.groupby("experiment", sort=False):
        keyed = rows.set_index(["split", "metric"])
        label = f"{name} - {rows['reference'].iloc[0]}"
        for col, src in ((label, "difference"), (f"{label} ci95_low", "ci95_low"),
                         (f"{label} ci95_high", "ci95_high"), (f"{name} verdict", "verdict")):
            out[col] = [keyed[src].get((s, m)) for s, m in zip(out["split"], out["metric"])]
    return out


def comparison_document(table: pd.DataFrame, docs: list[dict], paired: pd.DataFrame, reference: str | None,
                        notes: list[str]) -> str:
    """Markdown: per split the values with intervals (val marked as the selection set), then the paired
    differences from the reference with verdicts."""
    from urban_detection.detection.intervals import format_interval
    from urban_detection.detection.report import comparison_markdown, paired_markdown

    text = table.copy().astype(object)
    for (split, metric), row in table.iterrows():
        for name in table.columns:
            d = next(x for x in docs if x["experiment"] == name)
            ci = split_intervals(d["splits"].get(split) or {}).get(metric) or {}
            value = row[name]
            text.loc[(split, metric), name] = format_interval(None if pd.isna(value) else value,
                                                              ci.get("low"), ci.get("high"))
    titles = {SELECTION_SPLIT: f"{SELECTION_SPLIT} (selection set: it chose the checkpoint, so optimistic)"}
    return (comparison_markdown(table, notes=notes, formatted=text, split_titles=titles)
            + paired_markdown(paired[paired["slice"] == "all"], reference) + "\n" + slices_markdown(docs, paired))


def slices_markdown(docs: list[dict], paired: pd.DataFrame, metric: str = HEADLINE[1]) -> str:
    """Per non-selection split: ``metric`` per slice (rows) and experiment (columns) with intervals, and which
    experiment wins each slice (highest value; ``*`` when its paired verdict against the reference says
    better, or, for the reference, when every other experiment is worse)."""
    from urban_detection.detection.intervals import format_interval
    from urban_detection.detection.report import short_metric_name

    lines = []
    names = [d["experiment"] for d in docs]
    splits = dict.fromkeys(s for d in docs for s in d["splits"] if s != SELECTION_SPLIT)
    for split in splits:
        sections = {d["experiment"]: slice_sections(d["splits"].get(split) or {}) for d in docs}
        slice_names = list(dict.fromkeys(k for v in sections.values() for k in v))
        if slice_names == ["all"] and len(names) < 2:
            continue
        lines += [f"## {split}: {short_metric_name(metric)} per slice", "",
                  "| slice | " + " | ".join(names) + " | wins |", "|---|" + "---|" * (len(names) + 1)]
        for name in slice_names:
            cells, best, best_value = [], None, float("-inf")
            for exp in names:
                sec = sections[exp].get(name) or {}
                value, ci = (sec.get("metrics") or {}).get(metric), (sec.get("intervals") or {}).get(metric) or {}
                cells.append(format_interval(value, ci.get("low"), ci.get("high")))
                if value is not None and value == value and value > best_value:
                    best, best_value = exp, value
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_winner(best, name, split, metric, paired)} |")
        lines.append("")
    return "\n".join(lines)


def _winner(best: str | None, slice_name: str, split: str, metric: str, paired: pd.DataFrame) -> str:
    if best is None or paired.empty:
        return best or ""
    rows = paired[(paired["split"] == split) & (paired["slice"] == slice_name) & (paired["metric"] == metric)]
    if rows.empty:
        return best
    reference = rows["reference"].iloc[0]
    mine = rows[rows["experiment"] == best]
    sure = (mine["verdict"] == "better").all() if best != reference else (rows["verdict"] == "worse").all()
    return best + (" *" if sure and len(rows) else "")


def paired_figure(paired: pd.DataFrame, split: str = "test"):
    from urban_detection.detection.report import paired_difference_figure

    rows = (paired[(paired["split"] == split) & (paired["slice"] == "all") & paired["metric"].isin(HEADLINE)]
            if len(paired) else paired)
    return paired_difference_figure(rows, title=f"{split}: difference from the reference, 95% paired trip-bootstrap")


def _notes(docs: list[dict], skipped: list[str], reference: str | None) -> list[str]:
    notes = [f"{d['experiment']} (model {short(d.get('fingerprint'))}"
             + (", stored: not trained in this run" if d.get("stored_reference") else "") + f"): step {d.get('step')}"
             + (f" (best val {(d.get('best') or {}).get('metric')} of {d.get('last_step')} steps)"
                if (d.get("best") or {}).get("best_step") is not None else "")
             + f", {d.get('arch')} at {d.get('image_size')} px, "
             + ", ".join(f"{s} {v['frames']} frames of {v.get('trips', '?')} trips" for s, v in d["splits"].items())
             for d in docs]
    boot = next((s["bootstrap"] for d in docs for s in d["splits"].values() if s.get("bootstrap")), None)
    if boot:
        notes.append(f"[a, b]: {100 * boot['level']:g}% percentile interval over {boot['draws']} trip-bootstrap draws "
                     f"(seed {boot['seed']}): trips, not frames, are resampled")
    if reference and len(docs) > 1:
        notes.append(f"reference for the paired comparisons: {reference}")
    matchers = sorted({d.get("waymo_matcher") for d in docs if d.get("waymo_matcher")})
    if matchers:
        notes.append("Waymo2D AP matcher: " + ", ".join(matchers))
    if skipped:
        notes.append("not evaluated (no frames in the splits): " + ", ".join(skipped))
    if not docs:
        notes.append("no experiment was evaluated")
    return notes


def headline_table(docs: list[dict], split: str = "test") -> pd.DataFrame:
    """One row per evaluated experiment: its model, step and headline metrics on ``split`` with their
    95% interval (``<metric> ci95_low|high``)."""
    columns = ["experiment", "model", "step", "split"]
    for k in HEADLINE:
        columns += [k, f"{k} ci95_low", f"{k} ci95_high"]
    rows = []
    for d in docs:
        split_doc = d["splits"].get(split) or {}
        metrics, ci = split_doc.get("metrics") or {}, split_intervals(split_doc)
        row = {"experiment": d["experiment"], "model": short(d.get("fingerprint")), "step": d.get("step"),
               "split": split}
        for k in HEADLINE:
            row.update({k: metrics.get(k), f"{k} ci95_low": (ci.get(k) or {}).get("low"),
                        f"{k} ci95_high": (ci.get(k) or {}).get("high")})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)

"""Result tables built from run directories alone: the paper's comparison tables (Tables 1-3) with this
package's reproduced numbers beside them, and the ablation tables (Tables 4-5). Written as Markdown and
LaTeX (booktabs); a cell with several seeds reads ``mean ± std (n)``, a difference between rows
``+gain [95 % interval] (paired seeds)``.
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from reprokit.runs.stats import format_difference, paired_difference

SPLIT_BY_FRACTION = {0.0625: "1/16", 0.125: "1/8", 0.25: "1/4", 0.5: "1/2", 1.0: "full"}


def paper_numbers() -> pd.DataFrame:
    """Every mIoU the STPG paper reports (Tables 1-5, Fig. 8b), with its source table and split, and the
    reported cells of CW-BASS (arXiv:2502.15152) and FARCLUSS (source ``CW-BASS paper`` / ``FARCLUSS paper``;
    FARCLUSS's classic VOC fractions 1/16 .. 1/2 stored as their label counts 92 .. 732)."""
    with resources.files("reprokit.viz").joinpath("paper_numbers.csv").open() as f:
        return pd.read_csv(f, dtype={"split": str})


def paper_curve(parameter: str) -> dict[float, float]:
    """The paper's mIoU against ``parameter`` (Fig. 8: rows named ``<parameter>=<value>``), {value: mIoU};
    empty where the paper gives no numbers for it."""
    paper = paper_numbers()
    rows = paper[paper["method"].str.startswith(f"{parameter}=")]
    return {float(m.split("=", 1)[1]): float(v) for m, v in zip(rows["method"], rows["miou"])}


def paper_dataset(row: pd.Series) -> str:
    """The paper's protocol a run belongs to: cityscapes, voc-blended, voc-classic, or its own data set."""
    if row["dataset"] == "voc":
        return "voc-classic" if row.get("split_family") == "classic" else "voc-blended"
    return row["dataset"]


def split_label(row: pd.Series) -> str:
    """``1/8``-style label for fraction splits; the labeled count for the classic VOC protocol."""
    if paper_dataset(row) == "voc-classic":
        return str(int(row["labeled_count"]))
    frac = row.get("labeled_fraction")
    if frac is None or (isinstance(frac, float) and math.isnan(frac)):
        return str(int(row["labeled_count"]))
    return SPLIT_BY_FRACTION.get(round(float(frac), 4), f"{frac:g}")


def mean_std(values: pd.Series) -> dict:
    """Mean and sample std (NaN for one value) in percent, and the count; no values give NaN."""
    v = 100 * values.astype(float)
    if not len(v):
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else math.nan, "n": len(v)}


def fmt(mean: float, std: float = math.nan, n: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.2f} ± {std:.2f} ({n})" if n > 1 and not math.isnan(std) else f"{mean:.2f}"


def comparison_table(runs: pd.DataFrame, source: str, method_label: str = "reprokit STPG",
                     method: str = "stpg") -> pd.DataFrame:
    """One of Tables 1-3: the paper's rows for ``source`` ("Table 1" ...), then this package's runs of
    ``method`` on the same protocol (mean ± std over seeds), then their delta to the paper's STPG row."""
    paper = paper_numbers()
    paper = paper[paper["source"] == source]
    dataset = paper["dataset"].iloc[0]
    splits = list(dict.fromkeys(paper["split"]))
    wide = paper.pivot_table(index="method", columns="split", values="miou", sort=False)[splits]
    table = pd.DataFrame({s: [fmt(v) for v in wide[s]] for s in splits}, index=wide.index)
    ours = runs[(runs["method"] == method)] if len(runs) else runs
    ours = ours[[paper_dataset(r) == dataset for _, r in ours.iterrows()]] if len(ours) else ours
    reproduced, delta = {}, {}
    for s in splits:
        cell = ours[[split_label(r) == s for _, r in ours.iterrows()]]["miou"] if len(ours) else pd.Series([])
        if len(cell):
            stats = mean_std(cell)
            reproduced[s] = fmt(**stats)
            delta[s] = f"{stats['mean'] - wide.loc['STPG', s]:+.2f}"
        else:
            reproduced[s], delta[s] = "-", "-"
    table.loc[method_label] = reproduced
    table.loc["delta to paper STPG"] = delta
    return table.rename_axis("Method").reset_index()


def ablation_table(runs: pd.DataFrame, rows: dict[str, str], source: str | None = None,
                   paper_dataset_name: str | None = None) -> pd.DataFrame:
    """Tables 4 and 5: one line per ablation row. ``rows`` maps the row label, which is the paper's row name
    in ``source`` on ``paper_dataset_name`` (the reference column; none without ``source``), to the config
    name of its runs. Gains are relative to the first row: for the reproduced numbers the paired difference
    over the seeds both rows ran, with its 95 % interval (the difference of means, marked unpaired, where no
    seed pairs); for the paper's numbers the plain difference."""
    paper = paper_numbers()
    paper = paper[(paper["source"] == source) & (paper["dataset"] == paper_dataset_name)]
    out, base, paper_base = [], None, None
    for label, name in rows.items():
        by_seed = seed_values(runs, name)
        stats = mean_std(by_seed)
        ref = paper[paper["method"] == label]["miou"]
        ref = float(ref.iloc[0]) if len(ref) else math.nan
        paper_base = ref if paper_base is None else paper_base
        if base is None:
            base, gain = by_seed, "-"
        else:
            gain = _paired_gain(by_seed, base)
        out.append({"Row": label, "mIoU (%)": fmt(**stats), "runs": stats["n"], "gain [95 % CI]": gain,
                    "paper": fmt(ref), "paper gain": _gain(ref, paper_base)})
    return pd.DataFrame(out)


def seed_values(runs: pd.DataFrame, name: str, value: str = "miou") -> pd.Series:
    """``value`` of the runs of config ``name``, indexed by seed (what paired comparisons pair on)."""
    if not len(runs):
        return pd.Series([], dtype=float)
    sel = runs[runs["name"] == name]
    return pd.Series(sel[value].astype(float).to_numpy(), index=sel["seed"].to_numpy())


def _paired_gain(values: pd.Series, base: pd.Series) -> str:
    diff = paired_difference(values, base)
    if diff["n"] or not (len(values) and len(base)):
        return format_difference(diff)
    return f"{100 * (values.mean() - base.mean()):+.2f} (unpaired)"


def _gain(value: float, base: float) -> str:
    return "-" if math.isnan(value) or math.isnan(base) else f"{value - base:+.2f}"


def markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def latex(df: pd.DataFrame, caption: str) -> str:
    """booktabs table; ±, Δ, − and the paper's superscripts are kept as math."""
    def cell(v) -> str:
        s = str(v)
        for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"),
                     ("^", "\\^{}"), ("±", "$\\pm$"), ("²", "$^2$"), ("Δ", "$\\Delta$"), ("−", "$-$")):
            s = s.replace(a, b)
        return s

    head = " & ".join(cell(c) for c in df.columns) + " \\\\"
    body = "\n".join(" & ".join(cell(v) for v in row) + " \\\\" for row in df.itertuples(index=False))
    return (f"\\begin{{table}}[t]\n\\centering\n\\caption{{{cell(caption)}}}\n"
            f"\\begin{{tabular}}{{{'l' + 'r' * (len(df.columns) - 1)}}}\n\\toprule\n{head}\n\\midrule\n{body}\n"
            f"\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n")


def write_table(df: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    """``stem``.md and ``stem``.tex; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, tex = stem.with_suffix(".md"), stem.with_suffix(".tex")
    md.write_text(f"{caption}\n\n{markdown(df)}")
    tex.write_text(latex(df, caption))
    return [md, tex]

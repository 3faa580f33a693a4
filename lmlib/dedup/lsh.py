"""The LSH S-curve: how likely a pair of a given Jaccard similarity becomes a candidate.

With b bands of r rows, a pair with Jaccard s shares at least one band bucket with probability
1 - (1 - s**r)**b. The curve is steepest near (1/b)**(1/r); pick b and r so that it is close to 1
at the Jaccard you must catch and close to 0 where verification work would be wasted.
"""

from __future__ import annotations

from pathlib import Path

from lmlib.plots import pyplot


def candidate_probability(jaccard: float, num_bands: int, rows_per_band: int) -> float:
    """Probability that a pair with this Jaccard similarity shares a band bucket."""
    return 1.0 - (1.0 - jaccard**rows_per_band) ** num_bands


def s_curve_threshold(num_bands: int, rows_per_band: int) -> float:
    """The approximate Jaccard where the S-curve rises through 1/2-ish: (1/b)**(1/r)."""
    return (1.0 / num_bands) ** (1.0 / rows_per_band)


def s_curve_table(
    num_bands: int, rows_per_band: int, jaccards: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
) -> list[dict]:
    """Rows {jaccard, candidate_probability} for the chosen bands and rows."""
    return [
        {
            "jaccard": round(s, 4),
            "candidate_probability": round(candidate_probability(s, num_bands, rows_per_band), 6),
        }
        for s in jaccards
    ]


def render_s_curve(
    path: str | Path, num_bands: int, rows_per_band: int, jaccard_threshold: float | None = None
) -> Path:
    """Draw the S-curve to a PNG at path."""
    import numpy as np

    plt = pyplot()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = np.linspace(0.0, 1.0, 201)
    figure, axes = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    axes.plot(s, 1.0 - (1.0 - s**rows_per_band) ** num_bands, color="tab:blue")
    for row in s_curve_table(num_bands, rows_per_band):
        axes.plot(row["jaccard"], row["candidate_probability"], "o", color="tab:blue", ms=4)
    if jaccard_threshold is not None:
        axes.axvline(jaccard_threshold, color="tab:red", ls="--", lw=1, label="verify threshold")
        axes.legend(loc="upper left")
    axes.set_xlabel("Jaccard similarity of n-gram sets")
    axes.set_ylabel("P(candidate pair)")
    axes.set_title(f"LSH S-curve: {num_bands} bands x {rows_per_band} rows")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path

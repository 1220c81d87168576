"""The published figures of each protocol (conf/protocol), and the table a protocol run ends with: our
figure, each published one with its source, and the difference.

A run writes the table into its folder (``protocol_table.md``) with its figures (``protocol.json``);
``python -m cf_lightning.results_table --protocol-runs DIR ...`` collects those into docs/protocols.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cf_lightning.atomic import write_text

PROTOCOL_FILE = "protocol.json"
PROTOCOL_TABLE = "protocol_table.md"


@dataclass(frozen=True)
class Figure:
    model: str
    values: tuple[float, ...]  # one per metric of the protocol, in METRICS' order
    source: str


# The logged metric each published column is (Liang et al.'s Recall@K is our normalised nrecall@K).
METRICS = {
    "ml1m_random_90_10": (("RMSE", "test/rmse"),),
    "ml10m_random_90_10": (("RMSE", "test/rmse"),),
    "strong_generalization": (
        ("Recall@20", "test/nrecall@20"),
        ("Recall@50", "test/nrecall@50"),
        ("NDCG@100", "test/ndcg@100"),
    ),
}
LOWER_IS_BETTER = {"RMSE"}
# The data set each protocol's published figures were measured on.
PUBLISHED_ON = {"ml1m_random_90_10": "ml1m", "ml10m_random_90_10": "ml10m", "strong_generalization": "ml20m"}
PUBLISHED = {
    "ml1m_random_90_10": (
        Figure("I-AutoRec", (0.831,), "Sedhain et al. 2015, AutoRec"),
        Figure("Sparse FC", (0.824,), "Muller et al. 2018, Kernelized Synaptic Weight Matrices"),
        Figure("GLocal-K", (0.822,), "Han et al. 2021, GLocal-K"),
    ),
    "ml10m_random_90_10": (
        Figure("SGD MF", (0.7720,), "Rendle, Zhang and Koren 2019, On the Difficulty of Evaluating Baselines"),
        Figure("Bayesian MF", (0.7633,), "Rendle, Zhang and Koren 2019"),
        Figure("Bayesian SVD++", (0.7563,), "Rendle, Zhang and Koren 2019"),
        Figure("Bayesian timeSVD++ flipped", (0.7485,), "Rendle, Zhang and Koren 2019"),
        Figure("I-AutoRec", (0.782,), "Sedhain et al. 2015, AutoRec"),
    ),
    "strong_generalization": (
        Figure("Mult-VAE", (0.395, 0.537, 0.426), "Liang et al. 2018, VAEs for Collaborative Filtering"),
        Figure("Mult-DAE", (0.387, 0.524, 0.419), "Liang et al. 2018"),
        Figure("EASE", (0.391, 0.521, 0.420), "Steck 2019, Embarrassingly Shallow Autoencoders"),
        Figure("iALS", (0.395, 0.532, 0.425), "Rendle et al. 2022, Revisiting the Performance of iALS"),
        Figure("WMF", (0.360, 0.498, 0.386), "Liang et al. 2018"),
        Figure("SLIM", (0.370, 0.495, 0.401), "Liang et al. 2018"),
    ),
}


def our_figures(protocol: str, metrics: dict) -> dict[str, float | None]:
    """Our run's value of each published column (None where the run did not log it)."""
    return {label: metrics.get(key) for label, key in METRICS.get(protocol, ())}


def comparison_table(protocol: str, model: str, data: str, metrics: dict) -> str:
    """Markdown: one row per published figure, with ours beside it and the difference (ours − published)."""
    if protocol not in PUBLISHED:
        return ""
    ours = our_figures(protocol, metrics)
    labels = list(ours)
    header = "| published model | source | " + " | ".join(f"{label} (ours − published)" for label in labels) + " |"
    lines = [
        f"protocol={protocol}: model={model} on data={data}: "
        + ", ".join(f"{label} {_num(value)}" for label, value in ours.items()),
    ]
    if data != PUBLISHED_ON[protocol]:
        lines.append(
            f"(the published figures are on {PUBLISHED_ON[protocol]}, not {data}: set beside them for orientation only)"
        )
    lines += ["", header, "|---|---|" + "---|" * len(labels)]
    for figure in PUBLISHED[protocol]:
        cells = []
        for label, published in zip(labels, figure.values, strict=True):
            value = ours[label]
            difference = "" if value is None else f" ({value - published:+.4f})"
            cells.append(f"{published:.4f}{difference}")
        lines.append(f"| {figure.model} | {figure.source} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_protocol_result(out_dir: Path, protocol: str, model: str, data: str, metrics: dict) -> str:
    """Write the run's figures and comparison table into ``out_dir``; returns the table (to print)."""
    text = comparison_table(protocol, model, data, metrics)
    if not text:
        return ""
    record = {"protocol": protocol, "model": model, "data": data, "figures": our_figures(protocol, metrics)}
    write_text(Path(out_dir) / PROTOCOL_FILE, json.dumps(record, indent=2) + "\n")
    write_text(Path(out_dir) / PROTOCOL_TABLE, text)
    return text


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def collected_table(run_dirs: list[Path]) -> str:
    """Markdown over protocol runs (each folder's ``protocol.json``), grouped by protocol and data: our
    rows, each as a multiple of popularity's figure where a popularity run is among them, then the
    published rows with their sources."""
    records = []
    for folder in run_dirs:
        path = Path(folder) / PROTOCOL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no protocol run here (a run with protocol=... writes it at its end)")
        records.append(json.loads(path.read_text()))
    text = []
    for protocol, data in dict.fromkeys((r["protocol"], r["data"]) for r in records):
        group = [r for r in records if (r["protocol"], r["data"]) == (protocol, data)]
        labels = [label for label, _key in METRICS[protocol]]
        baseline = next((r["figures"] for r in group if r["model"] == "popularity"), None)
        text += [f"### protocol={protocol}, data={data}", "", "| model | " + " | ".join(labels) + " |"]
        text.append("|---|" + "---|" * len(labels))
        for record in group:
            cells = []
            for label in labels:
                value, base = record["figures"].get(label), (baseline or {}).get(label)
                shown = value is not None and base and record["model"] != "popularity"
                ratio = f" ({value / base:.2f}× popularity)" if shown else ""
                cells.append(_num(value) + ratio)
            text.append(f"| {record['model']} | " + " | ".join(cells) + " |")
        text += ["", f"Published on {PUBLISHED_ON[protocol]}:", "", "| model | source | " + " | ".join(labels) + " |"]
        text.append("|---|---|" + "---|" * len(labels))
        for figure in PUBLISHED[protocol]:
            text.append(f"| {figure.model} | {figure.source} | " + " | ".join(f"{v:.4f}" for v in figure.values) + " |")
        text.append("")
    return "\n".join(text)

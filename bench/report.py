"""The report `make bench` writes (bench/REPORT.md, charts in bench/charts/): each headline
figure beside the baseline measured in the same run, with the ratio, and the machine it ran on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Figure:
    chart: str  # file stem of the chart it belongs to
    title: str
    label: str
    value: float
    baseline_label: str
    baseline: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


FIGURES: list[Figure] = []


def add(chart: str, title: str, label: str, value: float, baseline_label: str, baseline: float,
        unit: str) -> None:  # fmt: skip
    FIGURES.append(Figure(chart, title, label, value, baseline_label, baseline, unit))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal"))  # fmt: skip
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown memory"
    return (f"{os.cpu_count()} cores ({cpu}), {memory}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")  # fmt: skip


def charts(folder: Path) -> list[Path]:
    """One bar chart per group of figures (value beside its baseline); none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(exist_ok=True)
    made = []
    for stem in dict.fromkeys(f.chart for f in FIGURES):
        group = [f for f in FIGURES if f.chart == stem]
        fig, axes = plt.subplots(1, len(group), figsize=(4.2 * len(group), 3.4), squeeze=False)
        for ax, f in zip(axes[0], group, strict=True):
            bars = ax.bar([f.baseline_label, f.label], [f.baseline, f.value],
                          color=["#9aa5b1", "#2f7d6d"])  # fmt: skip
            ax.bar_label(bars, fmt="{:,.1f}" if f.value < 100 else "{:,.0f}")
            ax.set_title(f"{f.title}\n(ratio {f.ratio:.1%})", fontsize=9)
            ax.set_ylabel(f.unit)
            ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def write(sections: list[str], path: Path = HERE / "REPORT.md") -> Path:
    made = charts(HERE / "charts")
    lines = [
        "# Siyu benchmarks (`make bench`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. Every figure is beside a "
        "baseline measured in the same run; ratios are figure / baseline.",
        "",
        "| figure | value | baseline | baseline value | ratio |",
        "|---|---:|---|---:|---:|",
        *(
            f"| {f.title}: {f.label} | {f.value:,.1f} {f.unit} | {f.baseline_label} | "
            f"{f.baseline:,.1f} {f.unit} | {f.ratio:.1%} |"
            for f in FIGURES
        ),
        "",
        *(f"![{p.stem}](charts/{p.name})" for p in made),
        "",
        *sections,
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

"""`python -m distill.report <run or multirun folder>`: the paper-style table and Pareto plot of a sweep.

Reads every results.json below the folder, one row per run (student width and resolution, the recipe's
primary metric, M mult-adds, M params, CPU latency in eager PyTorch and ONNX Runtime), a row for each compressed
student (results.json "compressed": int8, pruned), the paper's row beside it where the recipe has a paper
table and the run is on the recipe's own data, and the teacher. A run on other data (``data=image_folder``, a
user's own folders: results.json ``data.name`` or ``config.data._target_``) is marked "own data" and never set
beside the paper, nor is its plot titled so. Run folders without a results.json (a crashed or unfinished job)
are listed as failed, never dropped. Writes report.md, report.csv and pareto.png.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.core.io import atomic_write, atomic_write_bytes
from distill.engine.run_folder import RUN_CONFIG
from distill.paper import PAPER_TABLES, PaperTable, is_recipe_data, paper_row, paper_table

__all__ = ["RunRecord", "collect_runs", "run_data", "report_rows", "to_markdown", "to_csv", "plot_pareto", "main"]

COLUMNS = ["run", "status", "model", "width", "resolution", "metric", "value", "paper", "delta",
           "mult_adds_m", "paper_mult_adds_m", "params_m", "paper_params_m", "latency_ms", "data", "own_data",
           "latency_ort_ms", "method"]
OWN_DATA = "own data"


@dataclass
class RunRecord:
    path: Path
    results: dict[str, Any] | None
    error: str | None = None


def _looks_like_run(folder: Path) -> bool:
    return (folder / ".hydra").is_dir() or (folder / "__main__.log").is_file() or (folder / RUN_CONFIG).is_file()


def _failure_reason(folder: Path) -> str:
    log = folder / "__main__.log"
    if log.is_file():
        lines = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line or "ERROR" in line]
        if lines:
            return lines[-1].strip()[-200:]
    return "no results.json (the run failed or has not finished)"


def collect_runs(root: str | Path) -> list[RunRecord]:
    """Every run below ``root``: finished ones with their results, unfinished or failed ones with a reason."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected a run folder (outputs/<date>/<time>) "
                                f"or a sweep folder (multirun/<date>/<time>) written by python -m distill")
    records = []
    for path in sorted(root.rglob("results.json")):
        try:
            results = json.loads(path.read_text())
            if not isinstance(results, dict) or "student" not in results:
                raise ValueError("no 'student' entry")
            if results.get("status", "ok") != "ok":  # files of runs before "status" existed are finished runs
                raise ValueError(f"status {results.get('status')!r}")
            records.append(RunRecord(path.parent, results))
        except (json.JSONDecodeError, ValueError) as error:
            records.append(RunRecord(path.parent, None, f"unreadable results.json: {error}"))
    finished = {record.path for record in records}
    candidates = [root] + [p for p in root.rglob("*") if p.is_dir()]
    for folder in sorted(candidates):
        if folder not in finished and _looks_like_run(folder) and not (folder / "results.json").exists():
            if not any(f.is_relative_to(folder) and f != folder for f in finished):
                records.append(RunRecord(folder, None, _failure_reason(folder)))
    if not records:
        raise FileNotFoundError(f"no results.json below {root}: expected the folder of a run or a sweep "
                                f"written by python -m distill (e.g. multirun/2026-11-26/10-00-00)")
    return sorted(records, key=lambda r: str(r.path))


def _millions(value: Any) -> float | None:
    return round(value / 1e6, 3) if isinstance(value, (int, float)) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_data(results: dict[str, Any]) -> str | None:
    """The data module a run used: results.json ``data.name``, else the class of ``config.data._target_``; None
    when neither is recorded (older results)."""
    data = results.get("data")
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return data["name"]
    config = results.get("config")
    target = config.get("data", {}).get("_target_") if isinstance(config, dict) else None
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else None


def _own_data(recipe: str, data: str | None) -> bool:
    """A run of a recipe with a paper table on data that is not the recipe's own."""
    return recipe in PAPER_TABLES and not is_recipe_data(recipe, data)


def report_rows(records: list[RunRecord], root: Path) -> list[dict[str, Any]]:
    """Teacher rows first (one per distinct teacher and data), then one row per run."""
    rows, teachers = [], {}
    for record in records:
        name = str(record.path.relative_to(root)) if record.path != root else "."
        if record.results is None:
            rows.append({"run": name, "status": f"failed: {record.error}"})
            continue
        results = record.results
        recipe, metric = results.get("recipe", "?"), results.get("primary_metric", "")
        data = run_data(results)
        own = _own_data(recipe, data)
        table = paper_table(recipe, data)
        student = results["student"]
        value = _number(student.get("metrics", {}).get(metric))
        paper = paper_row(recipe, student.get("width_multiplier"), student.get("resolution"), data)
        paper_value = paper.metric if paper and table and table.compares_to == metric else None
        rows.append({
            "run": name, "status": "ok", "model": student.get("name"), "width": student.get("width_multiplier"),
            "resolution": student.get("resolution"), "metric": metric, "value": value,
            "paper": paper_value,
            "delta": round(value - paper_value, 4) if value is not None and paper_value is not None else None,
            "mult_adds_m": _millions(student.get("mult_adds")), "paper_mult_adds_m": paper.mult_adds_m if paper else None,
            "params_m": _millions(student.get("params")), "paper_params_m": paper.params_m if paper else None,
            "latency_ms": _number(student.get("latency_ms")), "data": data, "own_data": own,
            "latency_ort_ms": _number(student.get("latency_ort_ms")),
        })
        rows += _compressed_rows(name, results, student, metric, data, own)
        teacher = results.get("teacher", {})
        key = (teacher.get("name"), teacher.get("resolution"), data)
        if key not in teachers:
            teacher_value = _number(teacher.get("metrics", {}).get(metric))
            paper_teacher = table.teacher if table else None
            paper_value = paper_teacher.metric if paper_teacher and table.compares_to == metric else None
            teachers[key] = {
                "run": name, "status": "teacher", "model": teacher.get("name"), "width": None,
                "resolution": teacher.get("resolution"), "metric": metric, "value": teacher_value, "paper": paper_value,
                "delta": round(teacher_value - paper_value, 4) if teacher_value is not None and paper_value is not None
                else None,
                "mult_adds_m": _millions(teacher.get("mult_adds")),
                "paper_mult_adds_m": paper_teacher.mult_adds_m if paper_teacher else None,
                "params_m": _millions(teacher.get("params")),
                "paper_params_m": paper_teacher.params_m if paper_teacher else None,
                "latency_ms": _number(teacher.get("latency_ms")), "data": data, "own_data": own,
                "latency_ort_ms": _number(teacher.get("latency_ort_ms")),
            }
    return list(teachers.values()) + rows


def _compressed_rows(name: str, results: dict[str, Any], student: dict[str, Any], metric: str, data: str | None,
                     own: bool) -> list[dict[str, Any]]:
    """One row per compressed student (results.json "compressed"): its metric as shipped, its cost, its eager
    latency and its ONNX Runtime latency (int8 where the method made an int8 file)."""
    rows = []
    for entry in results.get("compressed") or []:
        if entry.get("error"):
            rows.append({"run": name, "status": f"failed: compress {entry.get('method')}: {entry['error'][:200]}"})
            continue
        latency = entry.get("latency_b1_ms") or {}
        ort = latency.get("ort_int8") if latency.get("ort_int8") is not None else latency.get("ort_fp32")
        rows.append({
            "run": name, "status": "compressed", "model": f"{student.get('name')} [{entry.get('method')}]",
            "method": entry.get("method"), "width": student.get("width_multiplier"),
            "resolution": student.get("resolution"), "metric": metric,
            "value": _number((entry.get("metrics") or {}).get(metric)), "paper": None, "delta": None,
            "mult_adds_m": _millions(entry.get("mult_adds")), "paper_mult_adds_m": None,
            "params_m": _millions(entry.get("params")), "paper_params_m": None,
            "latency_ms": _number(latency.get("eager")), "latency_ort_ms": _number(ort), "data": data,
            "own_data": own,
        })
    return rows


def _cell(value: Any, kind: str = "") -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{100 * value:.1f}%"
    if kind == "delta":
        return f"{100 * value:+.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    header = ["model", "width", "resolution", "metric", "ours", "paper", "Δ (points)", "M mult-adds (ours / paper)",
              "M params (ours / paper)", "CPU latency ms (batch 1)", "ONNX Runtime ms (batch 1; int8 rows: int8)",
              "run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if not row.get("status", "").startswith(("ok", "teacher", "compressed")):
            lines.append(f"| **{row['status']}** |" + " |" * (len(header) - 2) + f" {row['run']} |")
            continue
        model = f"{row['model']} (teacher)" if row["status"] == "teacher" else row["model"]
        lines.append("| " + " | ".join([
            str(model), str(row["width"] or "—"), _cell(row["resolution"]), str(row["metric"]),
            _cell(row["value"], "percent"), OWN_DATA if row.get("own_data") else _cell(row["paper"], "percent"),
            _cell(row["delta"], "delta"),
            f"{_cell(row['mult_adds_m'])} / {_cell(row['paper_mult_adds_m'])}",
            f"{_cell(row['params_m'])} / {_cell(row['paper_params_m'])}",
            _cell(row["latency_ms"]), _cell(row.get("latency_ort_ms")), row["run"],
        ]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in COLUMNS})
    return buffer.getvalue()


def plot_pareto(rows: list[dict[str, Any]], path: Path, title: str = "", table: PaperTable | None = None) -> Path:
    """Metric against mult-adds (log axis): our runs, the paper's points, the teachers marked.

    With ``table`` every row of the paper's table is drawn (and its teacher), not only the rows our runs match,
    so a sweep at CPU-sized resolutions is still seen beside the paper's trade-off.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ours = [r for r in rows if r.get("status") == "ok" and r["value"] is not None and r["mult_adds_m"]]
    teachers = [r for r in rows if r.get("status") == "teacher" and r["value"] is not None and r["mult_adds_m"]]
    paper = [r for r in rows if r.get("status") == "ok" and r.get("paper") is not None and r["paper_mult_adds_m"]]
    if ours:
        axis.scatter([r["mult_adds_m"] for r in ours], [100 * r["value"] for r in ours], marker="o", label="ours")
        for r in ours:
            axis.annotate(f"{r['width']}-{r['resolution']}", (r["mult_adds_m"], 100 * r["value"]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")
    paper_points = [(r["paper_mult_adds_m"], r["paper"], "") for r in paper]
    if table is not None:
        paper_points = [(row.mult_adds_m, row.metric, row.label.replace(" MobileNet", ""))
                        for row in table.rows.values()]
    if paper_points:
        axis.scatter([x for x, _, _ in paper_points], [100 * y for _, y, _ in paper_points], marker="x",
                     color="tab:gray", label=f"paper ({table.metric_name})" if table is not None else "paper")
        for x, y, label in paper_points:
            if label:
                axis.annotate(label, (x, 100 * y), fontsize=7, color="tab:gray", xytext=(3, -9),
                              textcoords="offset points")
    if table is not None and table.teacher is not None:
        axis.scatter([table.teacher.mult_adds_m], [100 * table.teacher.metric], marker="*", s=160, color="tab:gray",
                     label=f"paper teacher ({table.teacher.label})")
    for r in teachers:
        axis.scatter([r["mult_adds_m"]], [100 * r["value"]], marker="*", s=160, color="tab:red",
                     label=f"teacher ({r['model']})")
    axis.set_xscale("log")
    axis.set_xlabel("mult-adds (millions, log scale)")
    metric = (ours or teachers or [{"metric": "metric"}])[0]["metric"]
    axis.set_ylabel(f"{metric} (%)")
    axis.set_title(title or "accuracy against computation")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
    return path


def pareto_title(records: list[RunRecord]) -> tuple[str, PaperTable | None]:
    """The plot's title and the paper table drawn in it: the paper's only when every run is on its recipe's data."""
    finished = [r.results for r in records if r.results]
    recipes = sorted({results.get("recipe", "?") for results in finished})
    own = sorted({run_data(results) or "?" for results in finished
                  if _own_data(results.get("recipe", "?"), run_data(results))})
    title = ", ".join(recipes)
    if own:
        return f"{title} on {OWN_DATA} ({', '.join(own)})", None
    sources = [PAPER_TABLES[name].source for name in recipes if name in PAPER_TABLES]
    table = PAPER_TABLES.get(recipes[0]) if len(recipes) == 1 else None
    return title + (f" vs paper {sources[0]}" if sources else ""), table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.report", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a run folder or a sweep (multirun) folder")
    parser.add_argument("--format", choices=("md", "csv", "json"), default="md", help="what to print")
    parser.add_argument("--out", type=Path, default=None, help="where report.md/.csv and pareto.png go (default: folder)")
    args = parser.parse_args(argv)
    try:
        records = collect_runs(args.folder)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = report_rows(records, args.folder)
    out = args.out or args.folder
    markdown, table_csv = to_markdown(rows), to_csv(rows)
    atomic_write_bytes(out / "report.md", markdown.encode())
    atomic_write_bytes(out / "report.csv", table_csv.encode())
    title, table = pareto_title(records)
    plot_pareto(rows, out / "pareto.png", title=title, table=table)
    printed = {"md": markdown, "csv": table_csv, "json": json.dumps(rows, indent=2) + "\n"}[args.format]
    sys.stdout.write(printed)
    failed = sum(1 for r in records if r.results is None)
    print(f"\n{len(records) - failed} finished, {failed} failed; wrote {out / 'report.md'}, {out / 'report.csv'}, "
          f"{out / 'pareto.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generate the results tables of README.md and docs/*.md from docs/results/*.json.

A table lives in a page between two markers::

    <!-- results:decode_speed -->
    ...generated, do not edit...
    <!-- /results -->

``python benches/make_tables.py`` rewrites every such block from its data file (written by a
bench through benches/results.py); ``--check`` changes nothing and exits 1 when a block
differs from what its data gives (tests/test_results_tables.py runs it). Every table is taken
from one data file, so from one machine, and ends with that machine, the date, the commit
and the command that produced it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results -->)", re.S)

Data = dict[str, Any]


def _load(name: str) -> Data:
    return json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(head), "|" + "---|" * len(head), *(_row(r) for r in rows)]


def _num(x: float | None, fmt: str, missing: str = "-") -> str:
    return missing if x is None else format(x, fmt)


# --- one renderer per table: data -> Markdown lines -------------------------------------------

VARIANT_NAMES = {"cpu": "`cpu` backend (all CPU kernels)",
                 "cpu_fused_ops": "`cpu`, fused ops only",
                 "eager_reference": "eager PyTorch reference",
                 "research_layout": "research-code layout"}


def speed(d: Data) -> list[str]:
    """Medians of interleaved rounds and per-round speed-ups (benches/test_bench_cpu_pipeline.py)."""
    f = d["figures"]
    rows = []
    for v in d["variants"]:
        rows.append([VARIANT_NAMES.get(v, v), f"{1e3 * f[f'{v}_s']:.0f}",
                     _num(f.get(f"{v}_speedup_vs_eager_reference"), ".2f", "1") + "x",
                     _num(f.get(f"{v}_speedup_vs_research_layout"), ".2f", "1") + "x"])
    return [f"{d['workload']}, {int(f['rounds'])} interleaved rounds, malloc: {d['malloc']}.", "",
            *_table(["variant", "median ms", "speed-up vs eager", "vs research layout"], rows)]


def rate_distortion(d: Data) -> list[str]:
    """D-NeRV points against the x264/x265 yuv444p curves (benches/rate_distortion.py)."""
    gaps: dict[tuple[float, str], dict] = {(c["bpp"], c["anchor"]): c for c in d["comparison"]
                                           if "gap_db" in c}
    s = d["settings"]
    rows = []
    for e in d["encodes"]:
        def gap(anchor: str, e: dict = e) -> str:
            c = gaps.get((e["bpp"], anchor))
            return "-" if c is None or c["gap_db"] is None else f"{c['gap_db']:+.1f}"

        def ratio(anchor: str, e: dict = e) -> str:
            c = gaps.get((e["bpp"], anchor))
            return "-" if c is None or c["rate_ratio"] is None else f"{c['rate_ratio']:.1f}x"
        rows.append([f"{e['target_bpp']:g}", f"{e['bpp']:.4f}", f"{e['psnr']:.2f}", e["choice"],
                     f"{e['cpu_s']:.0f}", f"{gap('x264')} / {gap('x265')}",
                     f"{ratio('x264')} / {ratio('x265')}"])
    frames = "all frames" if s["max_frames"] is None else f"first {s['max_frames']} frames"
    return [f"{', '.join(s['videos'])} ({frames}), `{s['size']}` widths scaled to each target, "
            f"{s['epochs']} epochs, batch {s['batch_size']}; anchors preset {s['preset']}, yuv444p.",
            "", *_table(["target bpp", "file bpp", "PSNR dB", "network, keyframes", "encode CPU s",
                         "gap to x264 / x265 dB", "bits over x264 / x265 at that PSNR"], rows),
            "", "A dash: outside the anchor's measured curve."]


def keyframe_codecs(d: Data) -> list[str]:
    """BD-rate against the anchor and bpp at equal PSNR (benches/keyframe_codecs.py)."""
    against = d["settings"]["against"]
    targets = d["targets_db"]
    codecs = [c for c in dict.fromkeys(r["codec"] for r in d["summary"]) if c != "png"]
    sizes = {v["name"]: f"{v['width']}x{v['height']}" for v in d["videos"]}
    rows = []
    for video, size in sizes.items():
        by = {r["codec"]: r for r in d["summary"] if r["video"] == video}
        for codec in codecs:
            r = by.get(codec)
            if r is None:
                continue
            bd = "(anchor)" if codec == against else _num(r["bd_rate_pct"], "+.1f") + (
                "%" if r["bd_rate_pct"] is not None else "")
            rows.append([f"{video} {size}", codec, bd,
                         *(_num(b, ".3f") for b in r["bpp_at"]),
                         f"{r['encode_ms_per_frame']:.0f} / {r['decode_ms_per_frame']:.0f}"])
    return [f"{d['settings']['keyframes']} keyframes a video, evenly spaced; BD-rate against "
            f"{against} (negative: fewer bytes at equal RGB PSNR).", "",
            *_table(["video", "codec", f"BD-rate vs {against}",
                     *(f"bpp at {t:g} dB" for t in targets), "encode / decode ms a frame"], rows)]


def qat_study(d: Data) -> list[str]:
    """Float, PTQ and QAT PSNR per bit depth (benches/qat_study.py)."""
    s = d["settings"]
    rows = [[r["bits"], f"{r['parameters']:,}", f"{r['float_psnr']:.3f}",
             f"{r['ptq_psnr']:.3f} ({-r['ptq_loss_db']:+.3f})",
             f"{r['qat_psnr']:.3f} ({-r['qat_loss_db']:+.3f})",
             f"{r['ptq_bpp']:.4f} / {r['qat_bpp']:.4f}", f"{r['qat_bits_per_parameter']:.2f}"]
            for r in d["rows"]]
    return [f"{s['video']}, first {s['frames']} frames, target {s['target_bpp']:g} bpp, "
            f"{s['epochs']} epochs, QAT over the last {s['qat_share']:.0%}; PSNR dB on the "
            "real frames.", "",
            *_table(["bits", "parameters", "float", "PTQ (change)", "QAT (change)",
                     "bpp PTQ / QAT", "weights, bits per parameter"], rows)]


def _spread(values: list[float | None], fmt: str) -> str:
    xs = [v for v in values if v is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(statistics.mean(xs), fmt)} ± {format(statistics.stdev(xs), fmt)}"


def paper_claims(d: Data) -> list[str]:
    """Mean ± sd over seeds of every method at every rate (benches/paper_claims.py)."""
    s = d["settings"]
    groups: dict[tuple[str, float, str], list[dict]] = {}
    for r in d["runs"]:
        groups.setdefault((r["comparison"], r["target_bpp"], r["method"]), []).append(r)
    rows = []
    for (comparison, bpp, method), rs in sorted(groups.items()):
        claim = "1, 3" if comparison == "1+3" else comparison
        rows.append([claim, f"{bpp:g}", method, _spread([r["bpp"] for r in rs], ".3f"),
                     _spread([r["psnr"] for r in rs], ".2f"),
                     _spread([r["ms_ssim"] for r in rs], ".4f"), rs[0]["epochs"],
                     _spread([r["accuracy"] for r in rs], ".2f")])
    seeds = len({r["seed"] for r in d["runs"]})
    return [f"{len(d['videos'])} videos of {s['frames']} frames, {s['epochs']} epochs, "
            f"{seeds} seed(s), mean ± sd; accuracy: held-out classifier on decoded clips "
            f"(original frames: {_spread(d['original_accuracy'], '.2f')}).", "",
            *_table(["claim", "target bpp", "method", "bpp", "PSNR dB", "MS-SSIM", "epochs",
                     "accuracy"], rows)]


SPEED = ("DNERV_BENCH_MALLOC=heap DNERV_BENCH_RECORD=1 pytest benches/test_bench_cpu_pipeline.py "
         "--benchmark-enable -s && python benches/make_tables.py")

# table name -> (data file, renderer, the command that produces the data)
TABLES: dict[str, tuple[str, Callable[[Data], list[str]], str]] = {
    "decode_speed": ("decode_speed", speed, SPEED),
    "train_step": ("train_step", speed, SPEED),
    "rd_carphone": ("rd_carphone", rate_distortion,
                    "python benches/rate_distortion.py carphone_pristine.mp4 --out rd-carphone "
                    "--targets 0.1 0.3 1 --epochs 40 --record rd_carphone"),
    "keyframe_codecs": ("keyframe_codecs", keyframe_codecs,
                        "python benches/keyframe_codecs.py carphone_pristine.mp4 bikes.mp4 "
                        "--out keyframe-study --record keyframe_codecs"),
    "qat_study": ("qat_study", qat_study,
                  "python benches/qat_study.py carphone_pristine.mp4 --out qat-study "
                  "--record qat_study"),
    "paper_claims": ("paper_claims", paper_claims,
                     "python benches/paper_claims.py --out paper-claims --record paper_claims"),
}


def provenance(d: Data, data_link: str) -> str:
    """The line under every table: machine, date, commit, command, and the data file."""
    m = d["machine"]
    where = f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}"
    if m.get("gpu"):
        where += f", {m['gpu']}"
    note = f" Note: {d['note']}." if d.get("note") else ""
    if d.get("env"):
        note += " Settings: " + ", ".join(f"`{k}={v}`" for k, v in d["env"].items()) + "."
    commit = d["commit"][:10] + ("` with local changes" if d["commit"].endswith("-dirty") else "`")
    return (f"Machine: {where}; {d['date']}, commit `{commit}.{note} "
            f"Command: `{d['command']}`. Data: [{Path(data_link).name}]({data_link}).")


def render(table: str, page: Path) -> str:
    """The generated Markdown of ``table`` as it appears in ``page`` (links relative to it)."""
    source, renderer, command = TABLES[table]
    if not (RESULTS_DIR / f"{source}.json").is_file():
        return f"Not measured yet: `{command}` records it.\n"
    d = _load(source)
    link = os.path.relpath(RESULTS_DIR / f"{source}.json", page.parent).replace(os.sep, "/")
    lines = [*renderer(d), "", provenance(d, link)]
    if (RESULTS_DIR / f"{source}.png").is_file() and page.parent != ROOT:   # plots: docs/ only
        lines += ["", f"![{source}: the bench's plot of these figures]({link[:-len('json')]}png)"]
    return "\n".join(lines) + "\n"


def regenerate(text: str, page: Path) -> str:
    """``text`` with every results block regenerated from its data."""
    def block(m: re.Match) -> str:
        if m.group(2) not in TABLES:
            raise KeyError(f"{page.name}: unknown results table {m.group(2)!r} "
                           f"(known: {', '.join(TABLES)})")
        return m.group(1) + render(m.group(2), page) + m.group(4)
    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a table differs from its data")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        new = regenerate(text, page)
        if new != text:
            stale.append(os.path.relpath(page, ROOT))
            if not args.check:
                page.write_text(new, encoding="utf-8")
    verb = "differ from their data" if args.check else "regenerated"
    for page in stale:
        print(f"{page}: tables {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

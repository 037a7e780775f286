"""Write an evaluation report: ``report.json`` (everything), ``report.md`` (tables) and PNG plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

from nut_ros.pipeline.evaluation import BY_SOURCE_KEYS, DEPTH_PREDICTORS, DEPTH_PROTOCOLS


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _frames_line(s: dict) -> str:
    """How many frames there were and what became of them; with ``images_received`` (a replay), the images lost in
    stamp matching by reason, which are not frames."""
    if "images_received" in s:
        lost = "; ".join(f"{n} {reason}" for reason, n in s["match_drops"].items()) or "none"
        line = (f"Frames: {s['frames_total']} images matched by stamp of {s['images_received']} received (lost in "
                f"stamp matching: {lost}); frame indices count the matched images")
    else:
        line = f"Frames: {s['frames_total']} total"
    return (f"{line}. Stride {s['stride']}: {s['key_frames']} key frames re-rendered, {s['interp_frames']} held-out "
            f"frames interpolated ({s['interp_skipped']} skipped).")


def _markdown(meta: dict, s: dict) -> str:
    lines = [f"# nut_ros replay evaluation: {meta.get('bag', '')}", ""]
    lines += [f"- {k}: `{v}`" for k, v in meta.items()]
    lines += ["", _frames_line(s), "",
              "| frames | PSNR (model res) | SSIM (model res) | PSNR 256² | SSIM 256² |", "|---|---|---|---|---|"]
    for name, key in (("key (pair time 1)", "key"),
                      ("key: the input against itself (exact-match upper bound, not a baseline)", "copy"),
                      ("interpolated", "interp"), ("blend baseline (held-out)", "blend"),
                      ("flow-warp baseline (held-out)", "flow_warp")):
        m = s.get(key) or {}
        lines.append(f"| {name} | {_fmt(m.get('psnr'), 2)} | {_fmt(m.get('ssim'))} | {_fmt(m.get('psnr_256'), 2)} | "
                     f"{_fmt(m.get('ssim_256'))} |")
    if "depth" in s:
        d = s["depth"]
        given = meta.get("input_depth")  # the ground truth is the depth the pipeline was given
        lines += ["", "Depth at key frames, AbsRel (δ<1.25) against the ground truth"
                  + (" (truth = the input depth: the pipeline was given the depth it is scored against)" if given
                     else "")
                  + ", each row on the same pixels with the same alignment (metric: none, metric runs only; median: "
                  "scale; scale+shift: in disparity). Constant and ramp without alignment are scaled to the rendered "
                  "depth's median. The motion input is scored where it has values (coverage: its share of the scored "
                  "pixels).", "",
                  f"| depth{' (truth = the input depth)' if given else ''} | " + " | ".join(DEPTH_PROTOCOLS.values())
                  + " | coverage |",
                  "|---|" + "---|" * (len(DEPTH_PROTOCOLS) + 1)]
        for key, name in DEPTH_PREDICTORS.items():
            cells = [f"{_fmt(d.get(f'depth_abs_rel{p}{key}'))} ({_fmt(d.get(f'depth_delta1{p}{key}'))})"
                     for p in DEPTH_PROTOCOLS]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(d.get(f'depth_coverage{key}'))} |")
        lines.append(f"\nDepth sources (key frames): {d.get('sources') or 'none'}. Rendered depth AbsRel per source "
                     "(metric / median / scale+shift; constant, scale+shift):")
        for src, v in (d.get("by_source") or {}).items():
            lines.append(f"- {src}: " + " / ".join(_fmt(v[k]) for k in BY_SOURCE_KEYS[:3])
                         + f"; constant {_fmt(v[BY_SOURCE_KEYS[3]])}")
    lines += ["", "| stage | p50 ms | p90 ms | p99 ms | mean ms | max ms |", "|---|---|---|---|---|---|"]
    for stage, p in s["latency_ms"].items():
        lines.append(f"| {stage} | " + " | ".join(_fmt(p[k], 1) for k in ("p50", "p90", "p99", "mean", "max")) + " |")
    wall = (f"Wall-clock rate: {_fmt(s['wall_fps'], 2)} key frames/s (the whole replay: reading and matching, the "
            "pipeline, the evaluation's renders of held-out views, baselines and scores, and writing the output "
            "bag). ") if "wall_fps" in s else ""
    lines += ["", f"Pipeline throughput: {_fmt(s.get('pipeline_fps'), 2)} key frames/s (key frames over the sum of "
              f"the pipeline's per-frame total latencies: the pipeline alone). {wall}"
              f"Gaussians: {_fmt(s['gaussians_mean'], 0)} per published map on average, "
              f"{s['gaussians_live']} live at the end.",
              f"Frames refused before the pipeline: {s.get('input_drops') or 'none'}; processed without output "
              f"messages: {s.get('output_drops') or 'none'}.",
              f"Pipeline drops: {s['pipeline']['drops'] or 'none'}; resets: {s['pipeline']['resets'] or 'none'}; "
              f"frames without depth because their depth image was unusable: {s['pipeline']['depth_unusable']}.",
              ""]
    return "\n".join(lines)


def _plots(out: Path, records: list[dict], summary: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    key = [r for r in records if r["kind"] == "key"]
    mid = [r for r in records if r["kind"] == "interp"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([r["index"] for r in key], [r["psnr"] for r in key], ".-", label="key frame re-render (t=1)")
    if mid:
        ax.plot([r["index"] for r in mid], [r["psnr"] for r in mid], ".", label="interpolated held-out")
        ax.plot([r["index"] for r in mid], [r["blend_psnr"] for r in mid], "x", label="frame blend baseline")
    ax.set(xlabel="frame index", ylabel="PSNR (dB, model resolution)", title="Image quality over the clip")
    paths.append(_save(fig, ax, out / "psnr.png"))

    stages = [s for s in summary["latency_ms"] if s != "total"]
    if key and stages:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        x = [r["index"] for r in key]
        bottom = [0.0] * len(key)
        for s in stages:
            vals = [r["latency_ms"].get(s, 0.0) for r in key]
            ax.bar(x, vals, bottom=bottom, width=max(summary["stride"] * 0.8, 0.8), label=s)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set(xlabel="frame index", ylabel="latency (ms)", title="Per-stage latency per key frame")
        paths.append(_save(fig, ax, out / "latency.png", grid=False))

    if any("depth_abs_rel_aligned" in r for r in key):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for k, label in (("depth_abs_rel", "AbsRel (metric)"), ("depth_abs_rel_aligned", "AbsRel (median-aligned)"),
                         ("depth_abs_rel_affine", "AbsRel (disparity scale+shift)"),
                         ("depth_abs_rel_affine_constant", "constant (scale+shift)"),
                         ("depth_abs_rel_affine_input", "motion input (scale+shift)")):
            pts = [(r["index"], r[k]) for r in key if k in r]
            if pts:
                ax.plot(*zip(*pts), ".-", label=label)
        ax.set(xlabel="frame index", ylabel="AbsRel", title="Rendered depth vs ground truth")
        paths.append(_save(fig, ax, out / "depth.png"))
    return paths


def _save(fig, ax, path: Path, grid: bool = True) -> Path:
    """Legend, optional grid, tight layout; write ``path`` and close the figure."""
    import matplotlib.pyplot as plt

    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _clean(v):
    """JSON-safe: non-finite floats become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_report(out_dir: str | Path, meta: dict, summary: dict, records: list[dict]) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "report.json"
    js.write_text(json.dumps(_clean({"meta": meta, "summary": summary, "frames": records}), indent=1))
    md = out / "report.md"
    md.write_text(_markdown(meta, summary))
    return [js, md, *_plots(out, records, summary)]

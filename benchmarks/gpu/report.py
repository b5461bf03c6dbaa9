"""The short markdown table of a benchmark run (bench.md), from its bench.json dict."""

from __future__ import annotations

import math


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "identical"
        value = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value}{unit}"


def main_table(main: dict, memory_unit: str) -> list[str]:
    worker, bare, anchor = (main.get(k) or {} for k in ("worker", "bare", "anchor"))
    rows = [
        ("boot to ready (s)", worker.get("boot_to_ready_s"), bare.get("boot_to_ready_s"), anchor.get("boot_s")),
        ("cold first job (s)", worker.get("cold_first_s"), bare.get("cold_first_s"), anchor.get("cold_first_s")),
        ("process start → first result (s)", worker.get("start_to_first_result_s"), None, None),
        ("warm median (s)", worker.get("median_s"), bare.get("median_s"), anchor.get("warm_median_s")),
        ("warm runs (s)", worker.get("runs_s"), bare.get("runs_s"), anchor.get("warm_runs_s")),
        ("sampling median (s)", (worker.get("timings_median_s") or {}).get("sampling"),
         (bare.get("timings_median_s") or {}).get("sampling"), anchor.get("warm_sampler_median_s")),
        ("sampler it/s (progress events)", None, bare.get("it_per_s"), anchor.get("it_per_s")),
        ("sampler it/s (steps / sampling span)", worker.get("it_per_s_from_sampling_span"),
         bare.get("it_per_s_from_sampling_span"), None),
        (f"peak memory, {memory_unit}", worker.get("peak_memory"), bare.get("peak_memory"), anchor.get("peak_memory")),
    ]
    lines = ["| measure | worker (production graph) | bare ComfyUI (same prompts) | stock graph (gpu_anchor kit) |",
             "| --- | --- | --- | --- |"]
    for label, *cells in rows:
        lines.append(f"| {label} | " + " | ".join(fmt_cell(c) for c in cells) + " |")
    for name, part in (("worker", worker), ("bare", bare), ("stock graph", anchor)):
        for key in ("error", "skipped"):
            if part.get(key):
                lines.append(f"\n{name}: {key}: {part[key]}")
    return lines


def speeds_table(main: dict) -> list[str]:
    """The worker's warm figures per speed preset, the default's from the main table."""
    worker = main.get("worker") or {}
    rows = {"the default": {**worker, "first_s": None}} | (worker.get("speeds") or {})
    base = worker.get("median_s")
    lines = ["| speed | steps | first job after the switch (s) | warm median (s) | warm runs (s) | sampling median (s) "
             "| vs default |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        if row.get("skipped") or row.get("error"):
            lines.append(f"| {name} | {row.get('skipped') or row.get('error')} | | | | | |")
            continue
        ratio = round(row["median_s"] / base, 3) if base and row.get("median_s") else None
        lines.append(f"| {name} | {fmt(row.get('steps'))} | {fmt(row.get('first_s'))} | {fmt(row.get('median_s'))} | "
                     f"{fmt_cell(row.get('runs_s'))} | {fmt((row.get('timings_median_s') or {}).get('sampling'))} | "
                     f"×{fmt(ratio)} |")
    return lines


def fmt_cell(value) -> str:
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return fmt(value)


def variants_table(variants: dict) -> list[str]:
    base = variants.get("baseline") or {}
    noise = max(0.02, base.get("spread") or 0.0)
    lines = [f"Baseline (bare ComfyUI, production graph + decoded-image output): warm median {fmt(base.get('median_s'))} s, "
             f"sampling {fmt((base.get('timings_median_s') or {}).get('sampling'))} s, {fmt(base.get('it_per_s'))} it/s; "
             f"same job rerun: PSNR {fmt(base.get('repeat_psnr_db'))} dB; spread of its runs ±{fmt(noise * 100)}% "
             "(a smaller speed-up is noise).", "",
             "| variant | kind | prediction | warm median s (speed-up) | sampling s (speed-up) | it/s | first job s "
             "| PSNR dB | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in variants.get("results", []):
        if r.get("status") != "measured":
            lines.append(f"| {r['name']} | {r['kind']} | {r['prediction']} | {r.get('status')} | | | | | |")
            continue
        sampling = (r.get("timings_median_s") or {}).get("sampling")
        lines.append(f"| {r['name']} | {r['kind']} | {r['prediction']} | {fmt(r.get('median_s'))} "
                     f"(×{fmt(r.get('speedup'))}) | {fmt(sampling)} (×{fmt(r.get('sampler_speedup'))}) | "
                     f"{fmt(r.get('it_per_s'))} | {fmt(r.get('first_s'))} | {fmt(r.get('psnr_db'))} | {verdict(r, noise)} |")
    return lines


def verdict(r: dict, noise: float) -> str:
    if r.get("counterfactual"):
        return "what the baseline saves"
    if r.get("proposal"):
        return "proposal (needs real weights to judge quality)"
    if r.get("numerics") and not r.get("psnr_ok"):
        return "rejected: PSNR below the minimum"
    speedup = r.get("speedup") or 0
    if speedup > 1 + noise:
        return "faster"
    return "slower" if speedup < 1 - noise else "within noise"


def models_note(models: dict) -> str:
    if not models.get("generated"):
        return f"files already in {models.get('raw_dir')}, on {models.get('filesystem')}"
    return f"generated in {fmt(models.get('generate_s'))} s, {fmt(models.get('gb_on_disk'))} GB on {models.get('filesystem')}"


def markdown(results: dict) -> str:
    meta = results.get("meta", {})
    models = results.get("models", {})
    comfy = meta.get("comfyui") or {}
    lines = [f"# GPU benchmark {'(tiny CPU trial) ' if meta.get('tiny') else ''}{meta.get('date_utc', '')} UTC", "",
             f"- device: {meta.get('gpu') or 'no GPU'}; ComfyUI {comfy.get('version')} on {comfy.get('device')}, "
             f"torch {comfy.get('torch')}, Python {meta.get('python')}, {meta.get('cpu_count')} CPUs",
             f"- workflow {meta.get('workflow')}, params {meta.get('params')}, photo {meta.get('photo_px')} px JPEG, "
             f"commit {meta.get('commit')}, ComfyUI flags {meta.get('comfy_args')}",
             f"- models: {models.get('files')} ({models_note(models)})", ""]
    main = results.get("main")
    if main:
        lines += ["## Worker vs stock ComfyUI", ""] + main_table(main, meta.get("memory_unit", "")) + [""]
        ratios = main.get("ratios") or {}
        lines += [f"- worker warm / bare warm (same prompts): ×{fmt(ratios.get('worker_warm_over_bare_warm'))} "
                  "(target ≤ 1.0)",
                  f"- worker warm / stock graph warm: ×{fmt(ratios.get('worker_warm_over_stock_graph_warm'))}",
                  f"- worker and bare outputs, lowest PSNR over the jobs: "
                  f"{fmt(main.get('worker_vs_bare_min_psnr_db'))} dB", ""]
        if (main.get("worker") or {}).get("speeds"):
            lines += ["### Worker per speed preset (same worker, warm; targets on an H100/H200: quality < 2.5 s and "
                      "≤ 1.0× the stock graph, turbo < 1.0 s)", ""] + speeds_table(main) + [""]
    variants = results.get("variants")
    if variants:
        lines += ["## Speed variants (one change each, bare ComfyUI)", ""]
        lines += [f"skipped: {variants['skipped']}"] if variants.get("skipped") else variants_table(variants)
        lines.append("")
    lines.append(f"elapsed {fmt(meta.get('elapsed_s'))} s")
    return "\n".join(lines) + "\n"

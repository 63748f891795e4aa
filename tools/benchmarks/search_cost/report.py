"""The report: notes, the printed table, and the one-line summary of this run.

Figures from the paper are in `PAPER_NOTE`, attributed; every ratio in the table, the targets
and `this_run_reference` are this benchmark's own measurements.
"""

from .measure import peak_minus_build
from .network import VARIANTS
from .workers import STEADY_MALLOC_TUNABLES

#: What the paper states about memory (FBNetV2, Sec. 4.3 "Memory Cost" and Fig. 7), and nothing
#: else: it gives no ratios to a plain network, which is what this benchmark measures.
PAPER_NOTE = (
    "Paper (FBNetV2 Sec. 4.3, Fig. 7): with masking, memory grows by ~1 MB per two orders of "
    "magnitude of channel-search-space growth, ~0.1% of the training memory; conventional DNAS "
    "exceeds the 16 GB of a V100 GPU with just 8 channel options per conv, while DMaskingNAS "
    "searches 32 options at nearly constant memory. The paper gives no ratios to a plain "
    "network: every ratio (x) in this report is this benchmark's own measurement."
)
SAVED_NOTE = (
    "saved = bytes autograd saves for backward in one training step (exact, "
    "saved_tensors_hooks, each storage once); activations only: nn.Parameters (and views of "
    "them) excluded, the input batch included."
)
VARIANTS_NOTE = (
    "plain = the max-width network (no masks), the same for every k, measured once; dnas = one "
    "conv(+BN) per option, zero-padded to max width, Gumbel-weighted sum (Eq. 1), every "
    "searched conv."
)


def build_notes(paired, malloc, isolated):
    """The notes of a run (printed under the report and kept in the JSON)."""
    if paired:
        time_note = (
            "time x of the masked supernet (channel and resolution rows) is paired: median of "
            "its steps / median of plain steps alternated with them in the same process "
            "(robust to machine load); other time x divide by the separate plain run."
        )
    else:
        time_note = "time x = median step time / that of the separate plain run."
    if malloc == "steady" and isolated:
        malloc_note = (
            "malloc: steady (worker env GLIBC_TUNABLES=" + STEADY_MALLOC_TUNABLES + "): freed "
            "memory stays in the heap, no per-step page-fault churn; flt = minor page faults "
            "per timed step."
        )
    else:
        malloc_note = (
            "malloc: process default; flt = minor page faults per timed step (page-fault churn "
            "of glibc's trim/mmap adds time that depends on allocation layout)."
        )
    peak_note = (
        "peak = peak RSS (CUDA: max_memory_allocated) during the steps minus the value after "
        "building model, optimizer and batch"
    )
    if isolated and paired:
        peak_note += (
            "; the masked rows' process also steps the plain network (paired "
            "timing), so their peak holds both models: saved bytes is the exact "
            "memory measure."
        )
    elif isolated:
        peak_note += "."
    else:
        peak_note += "; in-process runs (isolation none): not comparable, no ratio."
    return [SAVED_NOTE, PAPER_NOTE, VARIANTS_NOTE, time_note, malloc_note, peak_note]


def _star(paired):
    return "*" if paired else ""


def _f(v, fmt="{:.2f}"):
    return "n/a" if v is None else fmt.format(v)


def fmt_bytes(n):
    """Bytes as MiB with one decimal ('n/a' for None)."""
    if n is None:
        return "n/a"
    return f"{n / 2**20:.1f}"


def format_report(results):
    """The printed report: channel table, resolution table, targets, notes."""
    s = results["settings"]
    lines = []
    mem = "CUDA peak alloc" if s["device"].startswith("cuda") else "peak RSS"
    lines.append(
        f"Channel search cost vs k (batch {s['batch']}, {s['size']}x{s['size']}, device "
        f"{s['device']}, threads {s['threads']}, isolation {s['isolation']})"
    )
    lines.append(
        "  saved/peak in MiB; peak = peak during steps minus after build (raw peak); "
        "time = median ms/step; x = ratio to plain; * = paired time ratio"
    )
    head = (
        f"{'k':>3} | {'variant':<7} | {'saved':>8} {'x':>6} | {mem + ' (raw)':>22} {'x':>6} | "
        f"{'time':>8} {'x':>6} | {'n':>3} | {'flt':>6} | {'params':>9}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for row in results["channels"]:
        for variant in VARIANTS:
            if variant not in row:
                continue
            m = row[variant]
            peak = peak_minus_build(m)
            raw = m.get("cuda_peak_allocated_bytes", m.get("peak_rss_bytes"))
            peak_x = row.get(f"{variant}_peak_vs_plain")
            paired = row[f"{variant}_time_ratio_paired"]
            time_x = _f(row[f"{variant}_time_vs_plain"]) + _star(paired)
            lines.append(
                f"{row['k']:>3} | {variant:<7} | {fmt_bytes(m['saved_bytes']):>8} "
                f"{_f(row[f'{variant}_saved_vs_plain']):>6} | "
                f"{fmt_bytes(peak) + ' (' + fmt_bytes(raw) + ')':>22} {_f(peak_x):>6} | "
                f"{m['step_time_s'] * 1e3:>8.1f} {time_x:>6} | "
                f"{m['repeats']:>3} | {m.get('minor_faults_per_step', 0):>6.0f} | "
                f"{m['params']:>9}"
            )
    if results["resolution"]:
        lines.append("")
        lines.append(
            "Resolution search (supernet at max channels, resolution decision only) vs "
            f"plain at {s['size']}"
        )
        head = (
            f"{'resolutions':<18} | {'saved':>8} {'x':>6} | {'time':>8} {'x':>6} | "
            f"{'sum(r/rmax)^2':>13} {'bound':>6} | {'FLOPs x':>7} | {'n':>3}"
        )
        lines.append(head)
        lines.append("-" * len(head))
        for r in results["resolution"]:
            m = r["supernet"]
            lines.append(
                f"{str(r['resolutions']):<18} | {fmt_bytes(m['saved_bytes']):>8} "
                f"{_f(r['saved_vs_plain']):>6} | {m['step_time_s'] * 1e3:>8.1f} "
                f"{_f(r['time_vs_plain']) + _star(r['time_ratio_paired']):>6} | "
                f"{r['pixel_ratio']:>13.3f} {r['time_bound']:>6.3f} | "
                f"{r['flop_ratio']:>7.3f} | {m['repeats']:>3}"
            )
    lines.append("")
    lines.append("Targets (this benchmark's own bounds; the paper states no such ratios)")
    for t in results["targets"]:
        lines.append(
            f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: "
            f"{_f(t['value'], '{:.3f}')} <= {t['bound']:.3f}"
        )
    ours = this_run_reference(results)
    if ours:
        lines.append("  " + ours)
    lines.append("")
    for note in results["notes"]:
        lines.append("* " + note)
    return "\n".join(lines)


def this_run_reference(results):
    """'This run at k=K: masked a x memory, b x time; dnas c x memory, d x time' (vs plain)."""
    if not results["channels"]:
        return ""
    row = max(results["channels"], key=lambda r: r["k"])
    parts = []
    for variant in ("masked", "dnas"):
        if variant in row:
            peak = row[f"{variant}_peak_vs_plain"]
            parts.append(
                f"{variant} {_f(row[f'{variant}_saved_vs_plain'])}x saved memory, "
                + ("" if peak is None else f"{peak:.2f}x peak RSS, ")
                + f"{_f(row[f'{variant}_time_vs_plain'])}x time"
            )
    return f"This run at k={row['k']} (vs plain): " + "; ".join(parts) + "."

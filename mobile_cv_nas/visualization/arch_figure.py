"""Architecture figures in the style of the FBNetV2 paper's Fig. 6: one bar per block, colour =
kernel size, height = expansion rate drawn to scale.

What a block is (kernel, SE, activation, expansion) is read from the block registry
(`BLOCK_REGISTRY.default_option` and the builder's own arguments), never from the op name, so
ops registered by users are drawn from their builders too, and an op the figure cannot read is
drawn grey at height 1 instead of failing.
"""

import dataclasses
import os

from ..arch import ArchDef, load_arch_def, parse_arch_def
from ..arch.builder import block_kwargs
from ..blocks import BLOCK_REGISTRY, InvertedPool
from ..blocks.ops import skip_block
from ..io import atomic_write
from ..layers import make_divisible

#: Bar colours by kernel size; fixed so that figures of different archs compare at a glance.
KERNEL_COLORS = {1: "#a6cee3", 3: "#1f78b4", 5: "#ff7f00", 7: "#33a02c"}
OTHER_COLOR = "#b0b0b0"  # other kernels, global pools, ops the figure cannot read
SKIP_COLOR = "#e4e4e4"


@dataclasses.dataclass(frozen=True)
class BarSpec:
    """What one block's bar shows. `height` is mid / in channels (1 for plain convs)."""

    name: str  # xif<stage>_<index>
    op: str
    kernel: int | None  # None: no kxk conv the figure knows (global pool, custom op)
    height: float
    se: bool
    hswish: bool
    skip: bool  # an identity: drawn as a thin placeholder
    in_channels: int
    out_channels: int
    stride: int
    stage: int
    note: str = ""  # written above the bar: what colour and height do not say


def _as_arch(arch):
    if isinstance(arch, ArchDef):
        return arch
    if isinstance(arch, dict):
        return parse_arch_def(arch)
    return load_arch_def(arch)


def _option(op, kwargs, name):
    """The value op `op`'s builder gets for `name`: the row's (or the defaults'), else the
    builder's default (a fixed keyword of a named variant such as `ir_k5_hs` included)."""
    if name in kwargs:
        return kwargs[name]
    return BLOCK_REGISTRY.default_option(op, name)


def _builder_of(op):
    """The function or class behind op `op` (a named variant's partial unwrapped)."""
    builder = BLOCK_REGISTRY.get(op)
    return getattr(builder, "func", builder)


def _mid_channels(op, kwargs, in_channels):
    """The mid width the builder makes: `mid_channels` when given, else in * expansion rounded
    to the width divisor, as the inverted residual and pool blocks compute it."""
    mid = kwargs.get("mid_channels")
    if mid is not None:
        return mid
    expansion = _option(op, kwargs, "expansion")
    expansion = 1.0 if expansion is None else float(expansion)
    if BLOCK_REGISTRY.takes_option(op, "width_divisor"):
        return make_divisible(in_channels * expansion, kwargs.get("width_divisor", 1))
    return in_channels * expansion


def _bar(arch, block, in_channels):
    """The bar of one block; grey, height 1 and named for an op the registry cannot describe
    (not registered: an ArchDef built by hand; or a builder whose signature cannot be read)."""
    common = dict(
        name=block.name,
        op=block.op,
        in_channels=in_channels,
        out_channels=block.out_channels,
        stride=block.stride,
        stage=block.stage,
    )
    if block.op in BLOCK_REGISTRY:
        try:
            return _read_bar(arch, block, in_channels, common)
        except (ValueError, TypeError):
            pass
    return BarSpec(
        kernel=None, height=1.0, se=False, hswish=False, skip=False, note=block.op, **common
    )


def _read_bar(arch, block, in_channels, common):
    kwargs = block_kwargs(arch, block)
    builder = _builder_of(block.op)
    if builder is skip_block:
        projection = kwargs.get("projection")
        shape_kept = in_channels == block.out_channels and block.stride == 1
        identity = shape_kept if projection is None else not projection
        # the projection is a 1x1 conv-BN-ReLU (ReLU even in h-swish models)
        return BarSpec(
            kernel=None if identity else 1,
            height=1.0,
            se=False,
            hswish=False,
            skip=identity,
            note="skip" if identity else "skip 1x1",
            **common,
        )
    kernel = _option(block.op, kwargs, "kernel_size")
    if isinstance(kernel, (tuple, list)) and len(set(kernel)) == 1:
        kernel = kernel[0]
    kernel = kernel if isinstance(kernel, int) else None
    height = 1.0
    if BLOCK_REGISTRY.uses_expansion(block.op):
        height = _mid_channels(block.op, kwargs, in_channels) / in_channels
    note = ""
    if kernel is None:
        note = "pool" if builder is InvertedPool else block.op
    return BarSpec(
        kernel=kernel,
        height=float(height),
        se=bool(_option(block.op, kwargs, "se")),
        hswish=_option(block.op, kwargs, "act") == "hswish",
        skip=False,
        note=note,
        **common,
    )


def bar_specs(arch):
    """One BarSpec per block of `arch` (ArchDef, dict or YAML path), in forward order."""
    arch = _as_arch(arch)
    bars, channels = [], arch.in_channels
    for block in arch.blocks():
        bars.append(_bar(arch, block, channels))
        channels = block.out_channels
    return bars


def kernel_color(kernel):
    return KERNEL_COLORS.get(kernel, OTHER_COLOR)


def write_png(fig, path, dpi=120):
    """Save `fig` to `path` with the project's atomic write (mobile_cv_nas.io.atomic_write), so
    a reader (or a crash) never sees a half-written PNG and the file gets the normal mode.
    Returns `path`."""
    path = os.fspath(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return path


def _legend_handles():
    from matplotlib.patches import Patch

    kernels = [
        Patch(facecolor=c, edgecolor="black", label=f"k={k}") for k, c in KERNEL_COLORS.items()
    ]
    return [
        *kernels,
        Patch(facecolor=OTHER_COLOR, edgecolor="black", label="other (pool, custom)"),
        Patch(facecolor="white", edgecolor="black", hatch="///", label="squeeze-excite"),
        Patch(facecolor="white", edgecolor="black", linewidth=2.2, label="h-swish (thick edge)"),
        Patch(facecolor=SKIP_COLOR, edgecolor="0.4", linestyle="--", label="skip (identity)"),
    ]


def plot_architecture(arch, path, title=None, flops_m=None):
    """Draw `arch` (ArchDef, dict or YAML path) to the PNG `path`; returns `path`.

    One bar per block, left to right: colour = kernel size, height = expansion rate (mid / in
    channels, to scale), hatched = squeeze-excite, thick edge = h-swish, thin dashed grey =
    identity skip. Output channels are written under the bars, dotted lines mark stride-2
    blocks, and the title gives the input resolution (and `flops_m` MFLOPs when given).
    """
    return write_png(draw_architecture(arch, title=title, flops_m=flops_m), path)


def draw_architecture(arch, title=None, flops_m=None):
    """The figure of `plot_architecture`, as a matplotlib Figure (one BarContainer per block,
    in forward order), to embed or to save elsewhere."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    arch = _as_arch(arch)
    bars = bar_specs(arch)
    n = len(bars)
    fig = Figure(figsize=(max(7.0, 0.38 * n + 4.0), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    top = max(b.height for b in bars)
    for x, bar in enumerate(bars):
        if bar.stage % 2:  # shade every other stage so stages read as groups
            ax.axvspan(x - 0.5, x + 0.5, color="0.95", zorder=0, linewidth=0)
        if bar.skip:
            ax.bar(x, 0.5, width=0.3, color=SKIP_COLOR, edgecolor="0.4", linestyle="--", zorder=2)
        else:
            ax.bar(
                x,
                bar.height,
                width=0.78,
                color=kernel_color(bar.kernel),
                edgecolor="black",
                linewidth=2.2 if bar.hswish else 0.6,
                hatch="///" if bar.se else None,
                zorder=2,
            )
        if bar.note:
            y = 0.5 if bar.skip else bar.height
            ax.text(x, y + 0.05, bar.note, rotation=90, ha="center", va="bottom", fontsize=7)
    marker = blended_transform_factory(ax.transData, ax.transAxes)
    for x, bar in enumerate(bars):
        if bar.stride > 1:
            ax.axvline(x - 0.5, color="0.3", linestyle=":", linewidth=1, zorder=1)
            ax.text(x - 0.5, 1.01, f"s{bar.stride}", transform=marker, ha="center", fontsize=7)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(b.out_channels) for b in bars], fontsize=7, rotation=90)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, top * 1.15 + 0.6)  # room for the notes above the bars
    ax.set_xlabel("blocks in forward order (labels: output channels)")
    ax.set_ylabel("expansion rate (mid / in)")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    skips = sum(b.skip for b in bars)
    details = [f"input {arch.input_size}x{arch.input_size}", f"{n} blocks"]
    if skips:
        details[-1] += f" ({skips} skip)"
    if flops_m is not None:
        details.append(f"{flops_m:,.0f} MFLOPs" if flops_m >= 100 else f"{flops_m:.3g} MFLOPs")
    heading = title or arch.name or "architecture"
    ax.set_title(" · ".join([heading, *details]), pad=14)
    ax.legend(
        handles=_legend_handles(),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return fig

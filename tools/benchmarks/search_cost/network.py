"""The benchmark network and its three variants.

One inverted-residual network, same depth and strides for every variant:

  * ``masked``: the `Supernet` with k options for every searched conv (masking, Eq. 3);
  * ``plain``:  the max-width network without masks (`derive_arch` with every decision at its
    max, built by `mobile_cv_nas.arch.build_model`); the same for every k;
  * ``dnas``:   the masked supernet with every masked layer replaced by conventional DNAS
    (`ConventionalChannel`, Eq. 1).
"""

from mobile_cv_nas.arch import build_model
from mobile_cv_nas.search import GumbelSampler, Supernet, derive_arch

from .conventional import masked_layers, option_widths, to_conventional

VARIANTS = ("masked", "plain", "dnas")

#: The benchmark network: (op, max output channels, stride, repeat, expansion). Every block
#: output gets k width options ending at the same max. Each row has ONE expansion rate, so a
#: block's mid (expansion) widths are that rate times its input's k widths: k options per
#: searched conv throughout (a row listing k rates would give up to k x k mid widths). None:
#: a plain conv, no expansion.
DEFAULT_LAYOUT = (
    ("conv_k3_hs", 32, 2, 1, None),  # stem
    ("ir_k3_hs", 32, 2, 1, 2),
    ("ir_k5_se_hs", 64, 1, 2, 4),  # the repeat copy keeps a residual add
    ("ir_k3_hs", 128, 2, 1, 4),
    ("ir_pool_hs", 256, 1, 1, 4),  # expand, global pool, project; the classifier follows
)
#: A tiny layout for tests and `--quick`.
QUICK_LAYOUT = (
    ("conv_k3_hs", 8, 2, 1, None),
    ("ir_k3_hs", 8, 1, 1, 2),
    ("ir_k5_se_hs", 16, 2, 2, 2),
    ("ir_pool_hs", 32, 1, 1, 2),
)
NUM_CLASSES = 100


def option_range(max_value, k):
    """k evenly spaced options ending at `max_value`: [max - (k-1)*s, ..., max], s = max // k."""
    if k < 1:
        raise ValueError(f"Need at least one option, got k={k}.")
    if k == 1:
        return [max_value]
    step = max_value // k
    if step < 1:
        raise ValueError(f"Cannot fit {k} options up to {max_value} channels.")
    return list(range(max_value - (k - 1) * step, max_value + 1, step))


def benchmark_space(k=1, resolutions=(64,), layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES):
    """Search-space mapping (schema: `mobile_cv_nas.search.space`) of the benchmark network
    with k options for every block output width and one expansion rate per row."""
    stages = []
    for op, width, stride, repeat, expansion in layout:
        channels = width if k == 1 else [option_range(width, k)[0], width, width // k]
        row = {"op": op, "channels": channels, "stride": stride}
        if repeat != 1:
            row["repeat"] = repeat
        if expansion is not None:
            row["expansion"] = expansion
        stages.append([row])
    return {
        "name": f"benchmark_k{k}",
        "resolutions": sorted(resolutions, reverse=True),
        "width_divisor": 1,  # keep every option (no rounding of mid / SE widths)
        "num_classes": num_classes,
        "stages": stages,
    }


def block_output_options(supernet):
    """[(block name, tuple of output-width options)] for every block, in forward order."""
    return [(b.name, tuple(int(w) for w in b.out_width.widths())) for b in supernet.blocks()]


def set_max_decisions(supernet):
    """Make every decision's argmax its largest option (max widths, max resolution)."""
    for d in [*supernet.decisions.values(), *supernet.fixed_decisions.values()]:
        d.set_argmax(max(range(len(d.options)), key=d.options.__getitem__))
    return supernet


def check_k_options(supernet, k):
    """Raise unless every block output and every masked (searched) conv has exactly k options."""
    searched = [(f"output of {name}", opts) for name, opts in block_output_options(supernet)]
    layers = masked_layers(supernet)
    names = {id(m): n for n, m in supernet.named_modules()}
    searched += [(names[id(layer)], option_widths(layer)) for _, _, layer in layers]
    for what, options in searched:
        if len(options) != k:
            raise ValueError(
                f"{what} has {len(options)} options {list(options)}, expected {k}: pick widths "
                f"divisible by k and one expansion rate per row."
            )
    if k > 1 and not layers:
        raise ValueError(f"k={k} but the supernet has no masked layer.")


def build_supernet(
    k=1, resolutions=(64,), layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES, mode="soft", seed=0
):
    """The masked supernet; checks every searched conv got exactly k options."""
    space = benchmark_space(k, resolutions, layout, num_classes)
    net = Supernet(space, sampler=GumbelSampler(mode=mode, seed=seed))
    check_k_options(net, k)
    return net


def plain_model(layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES, resolution=64):
    """The max-width network, no masks: `build_model(derive_arch(...))` at every max."""
    net = set_max_decisions(build_supernet(1, (resolution,), layout, num_classes))
    return build_model(derive_arch(net))


def build_variant(variant, k=1, resolutions=(64,), layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES):
    if variant == "masked":
        return build_supernet(k, resolutions, layout, num_classes)
    if variant == "dnas":
        return to_conventional(build_supernet(k, resolutions, layout, num_classes))
    if variant == "plain":
        return plain_model(layout, num_classes, max(resolutions))
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")

"""Benchmark of the DMaskingNAS cost claim: searching k channel options per conv by masking
costs about what training the widest network costs, whatever k (FBNetV2 Sec. 3.1, Eq. 1-3;
the paper's own memory figures are in Sec. 4.3 and Fig. 7, quoted in `report.PAPER_NOTE`).

Three variants of one inverted-residual network, same depth and strides, are trained for a
step (soft Gumbel gates, train mode, forward + backward + SGD step on the weights):

  * ``masked``: the `Supernet` (one conv at max width, output masked, Eq. 3);
  * ``plain``:  the max-width network without masks; the same for every k;
  * ``dnas``:   conventional DNAS (`ConventionalChannel`: one conv (+BN) per option width, each
    output zero-padded to max width and summed with its Gumbel weight, Eq. 1) in place of
    every masked layer. With its per-option convs set to slices of the shared weights it
    computes exactly the masked supernet (Eq. 1 == Eq. 3 with shared weights).

Per configuration, each in a fresh process by default: the exact bytes autograd saves for
backward, peak RSS (CPU) or peak allocated memory (CUDA), and the median step time (the masked
supernet's paired with the plain network's in the same process unless `--no-pair`). Resolution
search is measured too: the supernet with only the resolution decision against the plain
network at the max resolution.

It uses mobile_cv_nas through its public API only: `Supernet` (its `decisions`, `blocks()`,
`auto_sample`, `weight_parameters()`), `GumbelSampler`, `Decision.set_argmax`, `derive_arch`,
`build_model`, and `MaskedChannel` (`parts()` and its width source `channels`).

Modules:
  * `network`          the benchmark space and layouts, the masked / plain / dnas variants
  * `conventional`     `ConventionalChannel` and `to_conventional` (conventional DNAS, Eq. 1)
  * `saved_tensors`    `SavedTensorMeter`: exact saved-for-backward bytes
  * `measure`          one configuration: training step, saved bytes, peak memory, step time
  * `workers`          running a configuration in an isolated worker process
  * `targets`          the target bounds and their evaluation
  * `run`              all configurations -> the results dict (what --json writes)
  * `report`, `plot`   the printed table and notes; the PNG plot
  * `cli`              `build_parser`, `resolve_args`, `main` (tools/benchmark_search.py)

Import what you need from its module; the package itself exports `main` only.
"""

from .cli import main

__all__ = ["main"]

#!/usr/bin/env python3
"""Fetch the full Fashion-MNIST (60k/10k) into the user cache, without root.

    python tools/fetch_fashion_mnist.py [--cache-dir DIR]

It runs `apt-get download dataset-fashion-mnist` and `dpkg-deb -x` (Debian/Ubuntu), checks
the four idx files against the published set's checksums and moves them to
<cache>/fashion-mnist (cache: --cache-dir, else $MOBILE_CV_NAS_CACHE, else iopath's). The
built-in names fashion_mnist_train / fashion_mnist_val then read the full set.
"""

import argparse
import logging
import sys

from mobile_cv_nas.data import DatasetError
from mobile_cv_nas.data.fashion_mnist_fetch import fetch_full_set


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: see above)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = fetch_full_set(args.cache_dir)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

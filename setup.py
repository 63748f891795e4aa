"""Packaging for mobile_cv_nas.

The top-level `model_zoo/` (catalog + arch defs) and `configs/` folders ship inside the wheel
as `mobile_cv_nas/_model_zoo/` and `mobile_cv_nas/_configs/`; `mobile_cv_nas/data_files.py`
looks there first and falls back to the source tree (editable installs, a plain checkout).
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "mobile_cv_nas", "__init__.py")) as f:
        match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
    if not match:
        raise RuntimeError("__version__ not found in mobile_cv_nas/__init__.py")
    return match.group(1)


def read_readme():
    path = os.path.join(HERE, "README.md")
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


# Data folders shipped as (file-only) sub-packages of mobile_cv_nas. A folder that is missing
# or holds no files (configs/ can be empty) is left out instead of failing the build.
DATA_FOLDERS = {"mobile_cv_nas._model_zoo": "model_zoo", "mobile_cv_nas._configs": "configs"}
DATA_GLOBS = ["**/*.yaml", "**/*.yml", "**/*.md", "**/*.json"]


def has_files(folder):
    return any(files for _, _, files in os.walk(os.path.join(HERE, folder)))


packages = find_packages(include=["mobile_cv_nas", "mobile_cv_nas.*"])
package_dir = {}
package_data = {}
for package, folder in DATA_FOLDERS.items():
    if has_files(folder):
        packages.append(package)
        package_dir[package] = folder
        package_data[package] = list(DATA_GLOBS)
# The embedded Fashion-MNIST subset (idx files, LICENSE, README), read by mobile_cv_nas.data.
package_data["mobile_cv_nas.data"] = ["fashion_mnist_subset/*"]

setup(
    name="mobile_cv_nas",
    version=read_version(),
    description="FBNetV2 models and the DMaskingNAS search, as a detectron2 plugin",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    author="mobile_cv_nas contributors",
    # PEP 639: an SPDX expression (setuptools >= 77, see pyproject.toml); it replaces the
    # "License ::" classifier, which setuptools refuses alongside it.
    license_expression="MIT",
    license_files=["LICENSE"],
    keywords=[
        "neural architecture search",
        "NAS",
        "DNAS",
        "FBNet",
        "FBNetV2",
        "DMaskingNAS",
        "efficient networks",
        "PyTorch",
        "detectron2",
    ],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Programming Language :: Python :: 3.14",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    # The floor of the torch that tools/dev.sh pins (torch 2.14.1: CPython 3.10-3.14 wheels).
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    package_data=package_data,
    include_package_data=False,
    zip_safe=False,
    install_requires=[
        "torch",
        "torchvision",
        # the ranges detectron2 0.6 accepts, so the two install side by side
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "pyyaml",
        "numpy",
        "matplotlib",  # mobile_cv_nas.visualization; tools/benchmarks plots (detectron2 needs it)
    ],
    extras_require={
        # pytest-xdist: the suite on 2 worker processes (bash tools/dev.sh test). ruff: `bash
        # tools/dev.sh lint`; a minor version pinned, since the formatter's style and the rules
        # change between ruff minor versions (configuration: pyproject.toml).
        "test": ["pytest", "pytest-xdist>=3.5,<4", "ruff>=0.17,<0.18"],
    },
)

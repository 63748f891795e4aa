"""Where the shipped data lives: `model_zoo/` and `configs/` at the top of the source tree,
copied into the package (as `_model_zoo/`, `_configs/`) when installed from a wheel."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(installed_name, source_name):
    installed = _PACKAGE / installed_name
    if installed.is_dir():
        return installed
    source = _PACKAGE.parent / source_name
    if source.is_dir():
        return source
    raise FileNotFoundError(
        f"mobile_cv_nas data folder not found (looked in {installed} and {source}); "
        f"reinstall the package with `pip install .`."
    )


def model_zoo_dir():
    return _data_dir("_model_zoo", "model_zoo")


def configs_dir():
    return _data_dir("_configs", "configs")

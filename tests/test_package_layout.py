"""The installed package holds the library only: the benchmarks live beside their commands
in tools/benchmarks, so `pip install mobile_cv_nas` brings no benchmark code."""

import pkgutil

import mobile_cv_nas


def test_no_benchmark_code_in_the_package():
    names = [m.name for m in pkgutil.walk_packages(mobile_cv_nas.__path__, "mobile_cv_nas.")]
    assert "mobile_cv_nas.search" in names  # the walk sees the subpackages
    assert not [n for n in names if "benchmark" in n.rsplit(".", 1)[-1]]


def test_benchmarks_importable_from_tools():
    import benchmarks.search_cost.cli  # noqa: F401  (tools/ on sys.path, see pytest.ini)
    import benchmarks.search_quality.cli  # noqa: F401

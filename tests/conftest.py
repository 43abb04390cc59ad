"""Shared test settings: deterministic, single-threaded torch so results are exact and CI-stable."""
import os

os.environ.setdefault("POLYDIFF_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache-tests"))
for _var in ("POLYDIFF_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread here and in every subprocess:
    os.environ.setdefault(_var, "1")  # on a shared 2-core machine two threads made the suite 2.7x slower

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def load_shipped():
    """``load_shipped(domain)``: the domain's shipped run on the CPU, loaded as ``sample`` does without --run; a
    missing checkpoint fails the test (it must ship inside the package)."""
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import load_run

    def load(name: str):
        domain = get_manager().domain(name)
        if domain.shipped_run is None or not (domain.shipped_run / "config.json").is_file():
            pytest.fail(f"the {name} checkpoint is not in the package")
        return load_run(domain, None, "cpu")

    return load

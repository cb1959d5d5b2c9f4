"""Names and paths given to the read side: the zoo's catalog asked for a variant it lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectbench.data.fixture import Fixture
from defectbench.data.image_set import in_memory
from defectbench.errors import UnknownNameError
from defectbench.zoo.catalog import Catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    # keys only read the fixture's hashes and threshold: no ELPV load, nothing built
    stand_in = Fixture(
        directory=tmp_path,
        content_sha256="0" * 64,
        split_sha256="1" * 64,
        assignment={},
        defect_threshold=0.5,
        data=in_memory([], np.zeros(0, np.int8), []),
    )
    return Catalog(tmp_path / "zoo", "smoke", fixture=stand_in)


@pytest.mark.parametrize(
    "method", ["manifest", "verify_loadable", "preprocess", "size_mb", "dev_rows", "recipe"]
)
def test_an_unknown_variant_is_an_unknown_name_error_not_a_key_error(catalog, method):
    # the isolated-memory probe calls catalog.manifest(name) first: it raised KeyError: 'nope'
    with pytest.raises(
        UnknownNameError,
        match=r"unknown variant 'nope' in profile 'smoke'; "
        r"`defectbench zoo list --profile smoke` shows all \d+",
    ):
        getattr(catalog, method)("nope")


def test_an_unknown_variant_gets_the_nearest_name(catalog):
    with pytest.raises(
        UnknownNameError,
        match=r"'lite0.kd' .*did you mean "
        r"'tf_efficientnet_lite0.kd'\?",
    ):
        catalog.manifest("lite0.kd")
    with pytest.raises(UnknownNameError, match="did you mean 'tf_efficientnet_lite0.kd'"):
        catalog.predictor("tf_efficientnet_lite0.kdd", "fp32", "cpu")

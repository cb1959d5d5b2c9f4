"""The zoo's predictors take only images of the size their variant was built and scored at."""

import numpy as np
import pytest

from defectbench.errors import DataError
from defectbench.zoo.build import build_zoo
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.derived import TrainedRecipe, img_size, torch_root
from defectbench.zoo.profiles import CNN_STUDENT, TEACHER, get_profile
from defectbench.zoo.registry import all_recipes

PRUNED = f"{TEACHER}.pruned50"


@pytest.fixture(scope="module")
def smoke_catalog(tmp_path_factory) -> Catalog:
    # the smoke teacher and its pruned child: a trained and a derived eager CNN, built in
    # seconds (the pruned one's parent is the teacher, so nothing else is trained)
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(get_profile("smoke"), root, [TEACHER, PRUNED], log=lambda _: None)
    return Catalog(root, "smoke")


@pytest.mark.parametrize(
    "name, precision", [(TEACHER, "fp32"), (TEACHER, "bf16"), (PRUNED, "fp32")]
)
def test_an_eager_cnn_variant_refuses_a_batch_of_another_image_size(smoke_catalog, name, precision):
    # an eager CNN runs at any size: a batch preprocessed for another variant was scored
    # without a word, by another function than the one its dev threshold was chosen for
    size = smoke_catalog.preprocess(name).size
    predictor = smoke_catalog.predictor(name, precision, "cpu")
    assert predictor.input_shape == (3, size, size) == smoke_catalog.input_shape(name)
    assert predictor.predict_logits(np.zeros((2, 3, size, size), np.float32)).shape == (2, 2)
    wrong = size + 32
    with pytest.raises(
        DataError,
        match=(
            rf"predictor '{name}' takes images of shape \(C, H, W\) = \(3, {size}, {size}\), got a "
            rf"batch of shape \(2, 3, {wrong}, {wrong}\); preprocess them with the artifact's own "
            r"Preprocess"
        ),
    ):
        predictor.predict_logits(np.zeros((2, 3, wrong, wrong), np.float32))


def test_a_pruned_variant_records_and_loads_its_own_narrower_model(smoke_catalog):
    # the manifest's params are the pruned model's, not its parent's: the report's cost
    # columns and Pareto plots read them
    pruned = smoke_catalog.predictor(PRUNED, "fp32", "cpu").model
    manifest = smoke_catalog.manifest(PRUNED)
    params = sum(p.numel() for p in pruned.parameters())
    assert manifest["params"] == params == manifest["pruning"]["params_after"]
    assert params < smoke_catalog.manifest(TEACHER)["params"]


def test_a_chain_of_derived_variants_takes_its_trained_roots_input_size():
    # `.pruned50.int8_ort` is three steps from the student it was trained as (int8_ort of
    # the ONNX export of the pruned model): the images it is scored on are sized for that root
    recipes = all_recipes("smoke")
    student = f"{CNN_STUDENT}.kd"
    assert torch_root(recipes, f"{student}.pruned50.int8_ort") == student
    assert img_size(recipes, f"{student}.pruned50.int8_ort") == recipes[student].model.img_size
    for name in recipes:
        assert isinstance(recipes[torch_root(recipes, name)], TrainedRecipe), name

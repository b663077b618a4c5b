"""Reader.masc_by_layer: one layer at a time, estimators freed, the same k and predictions as
MASC fitted on each layer's collected activations."""
import gc
import weakref

import numpy as np
import pytest
import torch

from conftest import requires_mnist
from MASC import MinimumAngleSubspaceClassifier, data, models, readout
from MASC.corruption import corrupt_labels

pytestmark = requires_mnist


def _setup(data_root, batch_size=70, rows_on_disk=False):
    train = data.load("MNIST", data_root, True).first(300)
    test = data.load("MNIST", data_root, False).first(120)
    torch.manual_seed(0)
    reader = readout.Reader(models.build("CNN", "MNIST"), "MNIST", batch_size=batch_size,
                            rows_on_disk=rows_on_disk)
    given = {"corrupted": corrupt_labels(train.labels.numpy(), 0.5, 10), "original": train.labels}
    return reader, train, test, given


@pytest.mark.slow  # about 5 s each: fits every layer twice
@pytest.mark.parametrize("rows_on_disk", [False, True])
def test_masc_by_layer_equals_fitting_every_layer_at_once(data_root, rows_on_disk):
    """k, predictions on the fitting rows and on two image sets, and the network's predictions,
    with the activations in memory or in temporary files (break: predict the image sets with the
    other labelling's estimator)."""
    reader, train, test, given = _setup(data_root, rows_on_disk=rows_on_disk)
    on_train, _ = reader.collect(train.images)
    on_test, net_test = reader.collect(test.images)
    on_part, net_part = reader.collect(test.images[:50])
    estimators = {(name, layer): MinimumAngleSubspaceClassifier().fit(
        on_train[layer], torch.as_tensor(y), classes=range(10)) for name, y in given.items()
        for layer in reader.layers}
    layers = []
    for found in reader.masc_by_layer(train, given, [test.images, test.images[:50]],
                                      classes=range(10)):
        layers.append(found.layer)
        assert found.dim == estimators["original", found.layer].n_features_in_
        assert torch.equal(found.network[0], net_test) and torch.equal(found.network[1], net_part)
        for name in given:
            key = name, found.layer
            assert np.array_equal(found.n_components[name], estimators[key].n_components_), key
            est = estimators[key]
            assert torch.equal(found.fitted_rows[name], est.predict(on_train[found.layer])), key
            assert torch.equal(found.predictions[0][name], est.predict(on_test[found.layer])), key
            assert torch.equal(found.predictions[1][name], est.predict(on_part[found.layer])), key
            assert found.fit_seconds[name] > 0 and found.predict_seconds[name] > 0
    assert layers == list(reader.layers)


@pytest.mark.slow  # reads a real CNN out
def test_masc_by_layer_holds_one_layer_and_frees_its_estimators(data_root, monkeypatch):
    """When a layer is yielded, only that layer was fitted and its estimators are gone (break:
    keep the estimators, or fit every layer before yielding the first)."""
    reader, train, test, given = _setup(data_root, batch_size=300)
    made, real = [], readout.iter_labellings

    def recording(*args, **kwargs):
        for name, est in real(*args, **kwargs):
            made.append(weakref.ref(est))
            yield name, est

    monkeypatch.setattr(readout, "iter_labellings", recording)
    layers = reader.masc_by_layer(train, given, [test.images], classes=range(10))
    for count, found in enumerate(layers, start=1):
        gc.collect()
        assert len(made) == 2 * count, found.layer
        assert all(ref() is None for ref in made), found.layer

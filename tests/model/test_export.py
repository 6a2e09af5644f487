"""ONNX export, parity proof and the INT8 variant."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sign_mlops.contract.labels import LETTERS, parse_label_map
from sign_mlops.sign_model import export
from sign_mlops.sign_model.evaluate import predict_probabilities
from sign_mlops.sign_model.export import (
    Int8Bounds,
    check_parity,
    judge_int8,
    judge_speedup,
    onnx_macs,
    quantize_int8,
    read_metadata,
    save_onnx,
)
from sign_mlops.sign_model.train import to_indices


def test_export_passes_checker_and_carries_metadata(onnx_model_path):
    proto = onnx.load(str(onnx_model_path))
    onnx.checker.check_model(proto)
    meta = read_metadata(onnx_model_path)
    assert [r["letter"] for r in parse_label_map(meta["label_map"])] == list(LETTERS)
    assert meta["mlflow_run_id"] == "test-run" and len(meta["train_data_sha256"]) == 64
    assert "0-255" in meta["preprocessing"] and "reference_profile" in meta
    assert proto.graph.input[0].name == "pixels"
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [28, 28, 1]
    assert proto.opset_import[0].version == 17


def test_parity_with_keras_on_the_evaluation_set(tiny_training, synthetic_datasets, onnx_model_path):
    images = synthetic_datasets[1].images
    parity = check_parity(predict_probabilities(tiny_training.model, images), onnx_model_path, images)
    assert parity.passed and parity.argmax_agreement == 1.0 and parity.max_abs_delta <= 1e-4


def _tampered(path, out):
    proto = onnx.load(str(path))
    biggest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weights = numpy_helper.to_array(biggest).copy()
    weights.flat[np.abs(weights).argmax()] *= -25.0  # one weight changed
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    return save_onnx(proto, out, {p.key: p.value for p in proto.metadata_props})


def test_tampered_onnx_fails_parity(tiny_training, synthetic_datasets, onnx_model_path, tmp_path):
    images = synthetic_datasets[1].images
    bad = _tampered(onnx_model_path, tmp_path / "tampered.onnx")
    parity = check_parity(predict_probabilities(tiny_training.model, images), bad, images)
    assert not parity.passed and parity.max_abs_delta > 1e-4


def test_int8_is_preprocessed_quantised_and_keeps_metadata(synthetic_datasets, synthetic_files, onnx_model_path,
                                                           tmp_path):
    train, test = synthetic_datasets
    int8 = quantize_int8(onnx_model_path, tmp_path / "m.int8.onnx", train.images[:256], read_metadata(onnx_model_path))
    assert "label_map" in read_metadata(int8)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx"]  # no pre-processing leftovers
    report = judge_int8(onnx_model_path, int8, test.images, to_indices(test.labels), synthetic_files[1])
    assert 0 < report.int8_accuracy <= 1 and report.int8_rows_per_s > 0 and report.fp32_rows_per_s > 0
    assert report.argmax_agreement > 0.9 and 0 < report.int8_robust_mean <= 1
    assert "rows/s" in report.speed_basis


def test_int8_refused_when_accuracy_loss_exceeds_bound(synthetic_datasets, synthetic_files, onnx_model_path, tmp_path):
    test = synthetic_datasets[1]
    degraded = _tampered(onnx_model_path, tmp_path / "degraded.onnx")  # stands in for a bad INT8 model
    report = judge_int8(onnx_model_path, degraded, test.images, to_indices(test.labels), synthetic_files[1],
                        Int8Bounds(max_loss_points=0.3, min_speedup=0.0))
    assert report.accuracy_loss_points > 0.3
    assert not report.accepted and "accuracy loss" in report.reason


def test_int8_refused_when_it_is_not_faster_on_the_scorer(synthetic_datasets, synthetic_files, onnx_model_path):
    """The same model as 'INT8' is exactly as good and never 3x faster: refused for speed alone."""
    test = synthetic_datasets[1]
    slow = judge_int8(onnx_model_path, onnx_model_path, test.images, to_indices(test.labels), synthetic_files[1],
                      Int8Bounds(min_speedup=3.0))
    assert not slow.accepted and slow.reason.startswith("speed-up not shown on the scorer")
    assert len(slow.speed_pairs) == Int8Bounds().speed_pairs and "median of 6 alternating pairs" in slow.reason
    assert slow.accuracy_loss_points == 0 and slow.argmax_agreement == 1.0
    fine = judge_int8(onnx_model_path, onnx_model_path, test.images, to_indices(test.labels), synthetic_files[1],
                      Int8Bounds(min_speedup=0.0))
    assert fine.accepted and "within bounds" in fine.reason


def _pairs(*ratios: float) -> list[tuple[float, float]]:
    return [(1000.0, 1000.0 * r) for r in ratios]


@pytest.mark.parametrize("ratios, accepted, median, low", [
    ((1.25, 1.28, 1.30, 1.31, 1.33, 1.36), True, 1.305, 1.28),  # a consistent 1.3x
    ((0.60, 1.25, 1.30, 1.30, 1.32, 1.35), True, 1.30, 1.25),  # one run spoiled by other work: forgiven
    ((0.80, 0.95, 1.10, 1.12, 1.30, 1.60), False, 1.11, 0.95),  # median over 1.05, the spread does not show it
    ((1.04, 1.06, 1.07, 1.08, 1.09, 1.10), True, 1.075, 1.06),  # small but every pair but one over the bar
    ((0.70, 0.74, 0.76, 0.78, 0.80, 1.90), False, 0.77, 0.74),  # a clear slowdown, one lucky pair
    ((1.50, 0.90), False, 1.20, 0.90),  # too few pairs to drop one: all must reach the bar
])
def test_the_speed_rule_needs_every_pair_but_one_to_show_the_speedup(ratios, accepted, median, low):
    speed = judge_speedup(_pairs(*ratios), 1.05)
    assert speed.accepted is accepted
    assert speed.median == pytest.approx(median) and speed.low == pytest.approx(low)
    assert speed.low <= speed.median <= speed.high
    assert f"median of {len(ratios)} alternating pairs, range x{min(ratios):.2f}-x{max(ratios):.2f}" in speed.describe()


def test_the_speed_rule_refuses_without_measurements():
    with pytest.raises(ValueError, match="at least one"):
        judge_speedup([], 1.05)


def test_judge_int8_times_fp32_and_int8_alternating_and_reports_every_pair(synthetic_datasets, synthetic_files,
                                                                          onnx_model_path, tmp_path, monkeypatch):
    """No real timing: a fake scorer records the order of the runs and hands out fixed rows/s."""
    test = synthetic_datasets[1]
    int8_path = shutil.copy(onnx_model_path, tmp_path / "int8.onnx")
    calls: list[str] = []
    rates = {"fp32": iter([1000.0, 990.0, 1010.0, 1005.0]), "int8": iter([1300.0, 1250.0, 1330.0, 1290.0])}

    def fake_timer(model_path, csv_path, out_dir):
        name = "int8" if str(model_path) == str(int8_path) else "fp32"
        assert csv_path == synthetic_files[1]

        def run() -> float:
            calls.append(name)
            return next(rates[name])

        return run

    monkeypatch.setattr(export, "scorer_timer", fake_timer)
    report = judge_int8(onnx_model_path, int8_path, test.images, to_indices(test.labels), synthetic_files[1],
                        Int8Bounds(speed_pairs=4))
    assert calls == ["fp32", "int8", "int8", "fp32", "fp32", "int8", "int8", "fp32"]
    assert report.speed_pairs == ((1000.0, 1300.0), (990.0, 1250.0), (1010.0, 1330.0), (1005.0, 1290.0))
    ratios = sorted(b / a for a, b in report.speed_pairs)
    assert report.speedup == pytest.approx((ratios[1] + ratios[2]) / 2)
    assert (report.speedup_low, report.speedup_high) == (pytest.approx(ratios[1]), pytest.approx(ratios[2]))
    assert report.accepted and report.reason.startswith(f"x{report.speedup:.2f} faster on the scorer (median of 4 "
                                                        f"alternating pairs, range x{ratios[0]:.2f}-x{ratios[-1]:.2f}")
    assert report.fp32_rows_per_s == pytest.approx(1002.5) and report.int8_rows_per_s == pytest.approx(1295.0)
    metrics = report.metrics()
    assert metrics["int8/speed_pairs"] == 4 and metrics["int8/speedup_low"] == pytest.approx(ratios[1])
    assert [m["int8/pair_speedup"] for m in report.pair_metrics()] == [b / a for a, b in report.speed_pairs]
    again = type(report)(**json.loads(json.dumps(asdict(report))))  # as run_record.json reads it back
    assert again == report


def test_macs_are_read_from_the_onnx_graph(onnx_model_path):
    """The tiny CNN by hand: conv 26*26*8*9 + conv 11*11*16*(8*9) + dense 400*24."""
    assert onnx_macs(onnx_model_path) == 26 * 26 * 8 * 9 + 11 * 11 * 16 * 72 + 400 * 24


def _reads_of_the_input(path):
    proto = onnx.load(str(path))
    return [node.op_type for node in proto.graph.node if proto.graph.input[0].name in node.input]


def _scaled_model(offset: float = 0.0, scaled_values_also_to_dense: bool = False):
    """Raw pixels -> Rescaling(1/255, offset) -> conv (-> 24 probabilities), like every architecture."""
    import keras
    from keras import layers

    from sign_mlops.sign_model.train import set_seeds

    set_seeds(1)
    inputs = keras.Input((28, 28, 1), name="pixels")
    scaled = layers.Rescaling(1 / 255, offset=offset)(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(scaled)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    if scaled_values_also_to_dense:  # the scaled pixels go somewhere a convolution's weights cannot absorb
        x = layers.Concatenate()([x, layers.Flatten()(scaled)])
    return keras.Model(inputs, layers.Dense(24, activation="softmax")(x))


def test_the_input_scaling_is_folded_into_the_first_convolution(synthetic_datasets, tmp_path):
    """No separate pass over the pixels to divide them by 255 (scorer speed: research/inference_graph.py),
    and the probabilities do not change."""
    from sign_mlops.sign_model.export import keras_to_onnx, onnx_probabilities

    images = synthetic_datasets[1].images[:256]
    for name, model in {"tiny_cnn": _tiny_cnn(), "rescaling and conv": _scaled_model()}.items():
        path = keras_to_onnx(model, tmp_path / f"{name}.onnx", {})
        assert "Mul" not in [n.op_type for n in onnx.load(str(path)).graph.node], name
        assert _reads_of_the_input(path) in (["Conv"], ["Reshape"], ["Transpose"]), name
        np.testing.assert_allclose(onnx_probabilities(path, images), predict_probabilities(model, images), atol=1e-5)


def _tiny_cnn():
    from sign_mlops.sign_model.model import build_model

    return build_model("tiny_cnn", 0.1)


def test_a_scaling_that_cannot_be_folded_is_kept(synthetic_datasets, tmp_path):
    """An offset (zero padding would then differ) or scaled pixels that also go elsewhere: the Mul stays
    and the ONNX model computes what Keras does."""
    from sign_mlops.sign_model.export import keras_to_onnx, onnx_probabilities

    images = synthetic_datasets[1].images[:256]
    for name, model in {"offset": _scaled_model(offset=-0.5),
                        "also dense": _scaled_model(scaled_values_also_to_dense=True)}.items():
        path = keras_to_onnx(model, tmp_path / f"{name}.onnx", {})
        assert "Mul" in [n.op_type for n in onnx.load(str(path)).graph.node], name
        np.testing.assert_allclose(onnx_probabilities(path, images), predict_probabilities(model, images), atol=1e-5)



def _first_convolution_on_raw_pixels(path):
    """An ONNX model that is only a first convolution reading raw pixels, as every exported model
    starts (the 1/255 folded into its weights): 8 kernels of one sign each, weights of similar size."""
    from onnx import helper

    from sign_mlops.sign_model.export import INPUT_NAME, OUTPUT_NAME

    kernel = (0.5 + 0.01 * np.arange(9, dtype=np.float32)).reshape(1, 1, 3, 3) * np.ones((8, 1, 1, 1), np.float32)
    kernel[1::2] *= -1
    graph = helper.make_graph(
        [helper.make_node("Transpose", [INPUT_NAME], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("Conv", ["nchw", "kernel", "bias"], [OUTPUT_NAME], pads=[1, 1, 1, 1])],
        "first_conv",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, [None, 28, 28, 1])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, [None, 8, 28, 28])],
        [numpy_helper.from_array(kernel / 255, "kernel"), numpy_helper.from_array(np.zeros(8, np.float32), "bias")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_int8_weights_fit_seven_bits_so_no_cpu_saturates(synthetic_datasets, tmp_path):
    """INT8 computes what fp32 does on any x86 CPU: weights are quantised to 7 bits (reduce_range).
    On CPUs without VNNI (AVX2, like this project's machines) onnxruntime's u8 x s8 kernel adds two
    products into an int16, which saturates when bright pixels meet full 8-bit weights
    (2 x 255 x 127 > 32767): the INT8 model of a synthetic-data run agreed with fp32 on 86 % of rows
    here. The gate measured that; a scorer on another CPU than the training machine's would not."""
    import onnxruntime as ort

    from sign_mlops.sign_model.export import INPUT_NAME

    fp32 = _first_convolution_on_raw_pixels(tmp_path / "conv.onnx")
    int8 = quantize_int8(fp32, tmp_path / "conv.int8.onnx", synthetic_datasets[0].images[:256], {})
    quantised = [numpy_helper.to_array(t) for t in onnx.load(str(int8)).graph.initializer
                 if t.data_type == onnx.TensorProto.INT8]
    assert quantised and max(int(np.abs(q.astype(np.int32)).max()) for q in quantised) <= 64
    bright = np.full((16, 28, 28, 1), 255, dtype=np.float32)
    bright[:, :, ::5] = 30  # dark columns: the responses differ from place to place

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: bright})[0]

    want, got = run(fp32), run(int8)
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()

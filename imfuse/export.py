"""SavedModel export with serving signatures, in TF Serving's versioned layout.

`export_saved_model(model, base, name)` writes BASE/<name>/<version>/ so TF Serving (and
`imfuse serve`) pick up new versions by polling. Exporters sharing one volume (PID 1 in
every container) cooperate without a lock: the version number is claimed by an atomic
mkdir of `.claim-<version>`, the model is written into `.tmp-<version>-<uuid>`, and
the finished folder appears in one rename (renameat2 RENAME_NOREPLACE where available),
so a poller, which only looks at integer names, never sees half a model, and an existing
version is never overwritten. On S3, `s3_version_claim` does the same with a
conditional put of a `.claim-<version>` object.

Signatures (docs/CONTRACTS.md), all batched over a 1-D string batch of encoded images:

- `serving_default`: `content_image`, `style_image` -> `stylized_image` (PNG, content size)
- `style_embedding`: `style_image` -> `embedding` (float32 [batch, D])
- `stylize_with_embedding`: `content_image`, `embedding` -> `stylized_image`
- `stylize_rest`: as `serving_default`, output named `stylized_image_bytes`. TF Serving's
  REST API base64-encodes only string outputs whose name ends in `_bytes`; any other
  string output is written raw into the JSON, which breaks for PNG bytes. REST clients
  therefore ask for `"signature_name": "stylize_rest"`; gRPC clients use the contract's
  `serving_default`.

Optional inputs. TF Serving cannot pick between two functions under one signature key,
but a SignatureDef may declare *defaults* (`SignatureDef.defaults`, exported from
tf.function keyword defaults as PlaceholderWithDefault); TF Serving's Predict accepts
requests that leave such inputs out. So both stylising signatures take, optionally:

- `strength` float32 [n], default [1.0]: 0 = the content's own embedding, 1 = the style;
- `preserve_color` bool [n], default [False]: keep the content's chroma (YIQ);
- `mask_image` string [n], default [b""]: encoded mask (alpha, else luminance) limiting
  where the style shows; empty bytes = no mask.

Here n is 1 (applies to the whole batch) or the batch size; `style_image` and
`embedding` broadcast the same way, so one style can serve a batch of contents.
Clients that omit the optional inputs get plain full-strength stylisation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from imfuse import fsutil
from imfuse.errors import ConfigError, ModelError
from imfuse.serving.defaults import MODEL_NAME
from imfuse.versions import is_saved_model, version_dirs

if TYPE_CHECKING:  # pragma: no cover
    from imfuse.networks.model import StyleTransferModel

SIGNATURES = ("serving_default", "style_embedding", "stylize_with_embedding", "stylize_rest")
REST_OUTPUT = "stylized_image_bytes"
METADATA_FILE = "assets.extra/imfuse_export.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # replayed by TF Serving before it serves a version
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
log = logging.getLogger("imfuse.export")


def build_serving_module(model: "StyleTransferModel"):
    """A tf.Module tracking the model's variables with the three serving tf.functions."""
    import tensorflow as tf

    from imfuse import serving_signatures as g

    style_size = int(model.variant.style_size)
    dim = int(model.embedding_dim)

    # The three stylising signatures share `stylize`, and two of them `embed`: each is one
    # tf.function traced once and called from every signature, as is the network call inside
    # (from both of `stylize`'s branches). Inlined Python, the same graph was traced for every
    # signature and branch: 6 copies of the transformer, a 10 MB saved_model.pb and most of an
    # export's time.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(style_image):
        def one(data):
            return g.square_resize(g.decode_rgb(data, "style_image"), style_size)

        styles = tf.map_fn(one, style_image, fn_output_signature=tf.TensorSpec([style_size, style_size, 3], tf.float32))
        return tf.ensure_shape(model.embed_style(styles, training=False), [None, dim])

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.float32),
    ])
    def stylize_batch(contents, embedding, strength):
        """The Keras model's own calls: blend towards the content's embedding, then transform."""
        blended = tf.cond(
            tf.reduce_all(tf.equal(strength, 1.0)),
            lambda: embedding,
            lambda: model.blend_embeddings(contents, embedding, strength, training=False),
        )
        return model.stylize_with_embedding(contents, blended, training=False)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string), tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.float32),
        tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.string),
    ])
    def stylize(content_image, embedding, strength, preserve_color, mask_image):
        batch = tf.shape(content_image)[0]
        strength = tf.convert_to_tensor(strength, tf.float32)
        valid = tf.debugging.Assert(
            tf.reduce_all(tf.logical_and(strength >= 0.0, strength <= 1.0)),
            ["strength must be between 0 and 1; got", strength],
        )
        with tf.control_dependencies([valid]):
            embedding = g.broadcast_batch(embedding, batch, "embedding")
        strength = g.broadcast_batch(strength, batch, "strength")
        preserve_color = g.broadcast_batch(preserve_color, batch, "preserve_color")
        mask_image = g.broadcast_batch(mask_image, batch, "mask_image")
        flat, shapes = g.decode_batch(content_image, "content_image")

        def finish(index, content, stylized):
            stylized = tf.clip_by_value(stylized, 0.0, 1.0)
            stylized = tf.cond(
                preserve_color[index], lambda: g.preserve_color(content, stylized), lambda: stylized
            )
            shape = tf.shape(content)
            mask = g.decode_mask(mask_image[index], shape[0], shape[1])
            return g.encode_png(g.apply_mask(content, stylized, mask))

        def batched():
            # Same-size contents go through the network as one batch (throughput).
            contents = tf.ensure_shape(tf.reshape(flat.flat_values, tf.concat([[batch], shapes[0]], 0)), [None, None, None, 3])
            stylized = stylize_batch(contents, embedding, strength)
            return tf.map_fn(
                lambda i: finish(i, contents[i], stylized[i]),
                tf.range(batch),
                fn_output_signature=tf.TensorSpec([], tf.string),
            )

        def looped():
            def one(i):
                content = tf.ensure_shape(tf.reshape(flat[i], shapes[i]), [None, None, 3])
                out = stylize_batch(content[None], embedding[i : i + 1], strength[i : i + 1])[0]
                return finish(i, content, out)

            return tf.map_fn(one, tf.range(batch), fn_output_signature=tf.TensorSpec([], tf.string))

        same_size = tf.logical_and(
            batch > 0, tf.reduce_all(tf.equal(shapes, shapes[: tf.minimum(batch, 1)]))
        )
        return tf.cond(same_size, batched, looped)

    options = [  # optional inputs of the stylising signatures, defaults below
        tf.TensorSpec([None], tf.float32, name="strength"),
        tf.TensorSpec([None], tf.bool, name="preserve_color"),
        tf.TensorSpec([None], tf.string, name="mask_image"),
    ]
    default_strength = tf.constant([1.0], tf.float32)
    default_preserve = tf.constant([False])
    default_mask = tf.constant([b""])
    content_spec = tf.TensorSpec([None], tf.string, name="content_image")
    style_spec = tf.TensorSpec([None], tf.string, name="style_image")

    def from_style_image(output: str):
        """serving_default and stylize_rest: the same stylisation, its output under another name."""

        @tf.function(input_signature=[content_spec, style_spec, *options])
        def stylize_style_image(
            content_image,
            style_image,
            strength=default_strength,
            preserve_color=default_preserve,
            mask_image=default_mask,
        ):
            return {output: stylize(content_image, embed(style_image), strength, preserve_color, mask_image)}

        return stylize_style_image

    @tf.function(input_signature=[style_spec])
    def style_embedding(style_image):
        return {"embedding": embed(style_image)}

    @tf.function(input_signature=[content_spec, tf.TensorSpec([None, dim], tf.float32, name="embedding"), *options])
    def stylize_with_embedding(
        content_image,
        embedding,
        strength=default_strength,
        preserve_color=default_preserve,
        mask_image=default_mask,
    ):
        return {"stylized_image": stylize(content_image, embedding, strength, preserve_color, mask_image)}

    module = tf.Module()
    # Keras 3 variables are trackable; listing them makes the SavedModel checkpoint hold them.
    module.model_variables = list(model.variables) + model.frozen_variables
    module.serving_default = from_style_image("stylized_image")
    module.style_embedding = style_embedding
    module.stylize_with_embedding = stylize_with_embedding
    module.stylize_rest = from_style_image(REST_OUTPUT)
    return module


def existing_versions(model_dir: Path) -> list[int]:
    """Integer-named subfolders (TF Serving ignores everything else: our .tmp- and .claim- folders)."""
    return sorted(version_dirs(model_dir))


def write_warmup_requests(path: Path, name: str, embedding_dim: int) -> None:
    """One small PredictRequest per signature, so TF Serving traces and warms every
    signature before the version goes live (first real requests are not slowed down)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    content, style = (  # small random pictures
        tf.io.encode_png(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)).numpy()
        for seed in (0, 1)
    )
    requests = {
        "serving_default": {"content_image": [content], "style_image": [style]},
        "stylize_rest": {"content_image": [content], "style_image": [style]},
        "style_embedding": {"style_image": [style]},
        "stylize_with_embedding": {
            "content_image": [content],
            "embedding": np.zeros((1, embedding_dim), np.float32),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=name, signature_name=signature),
                inputs={key: tf.make_tensor_proto(value) for key, value in inputs.items()},
            )
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _metadata(model: "StyleTransferModel", version: int) -> dict:
    from imfuse.networks import compute_precision

    return {
        "format": "imfuse-savedmodel/1",
        "version": version,
        "model_name": model.name,
        "variant": model.variant.to_dict(),
        "precision": compute_precision(model),
        "embedding_dim": int(model.embedding_dim),
        "signatures": list(SIGNATURES),
    }


CLAIM_PREFIX = ".claim-"  # BASE/<name>/.claim-<version>/: who is writing that version
TMP_PREFIX = ".tmp-"  # BASE/<name>/.tmp-<version>-<token>/: the version being written
_CLAIM_TRIES = 1000


def _claim(model_dir: Path, number: int) -> Path | None:
    """mkdir of `.claim-<number>` (atomic, NFS included): None if another export holds it."""
    claim = model_dir / f"{CLAIM_PREFIX}{number}"
    try:
        claim.mkdir()
    except FileExistsError:
        return None
    try:
        (claim / "owner").write_text(fsutil.owner() + "\n")
    except OSError:
        shutil.rmtree(claim, ignore_errors=True)
        raise
    return claim


def _claim_holder(claim: Path) -> str:
    try:
        return claim.joinpath("owner").read_text().strip() or "owner unknown"
    except OSError:
        return "owner unknown"


def claim_version(model_dir: Path, version: int | None) -> tuple[int, Path]:
    """Claim a version number: `version`, or the next free one after the highest.

    TF Serving polls only integer-named folders, so the claim is a non-integer folder.
    Two exporters picking the same number meet at its mkdir; the loser moves on to the
    next number (or, for an explicit --version, fails).
    """
    explicit = version is not None
    if version is None:
        version = max(existing_versions(model_dir), default=0) + 1
    number = int(version)
    for _ in range(_CLAIM_TRIES):
        claim = _try_claim(model_dir, number, explicit)
        if claim is not None:
            return number, claim
        number += 1
    raise ModelError(f"{model_dir}: no free version number after {_CLAIM_TRIES} tries")


def _try_claim(model_dir: Path, number: int, explicit: bool) -> Path | None:
    """The claim on `number` if it is free; else None, or ModelError for an explicit version."""
    target = model_dir / str(number)
    claim = None if target.exists() else _claim(model_dir, number)
    if claim is not None and target.exists():  # finished (and unclaimed) just before we claimed
        shutil.rmtree(claim, ignore_errors=True)
        claim = None
    if claim is None and explicit:
        held = model_dir / f"{CLAIM_PREFIX}{number}"
        if held.exists() and not target.exists():
            raise ModelError(
                f"{target} is being written by another export ({_claim_holder(held)}); if none is running, "
                f"remove {held}"
            )
        raise ModelError(f"{target} already exists; versions are never overwritten (pick another --version)")
    return claim


def _rename_into_place(tmp: Path, target: Path) -> None:
    """One rename: TF Serving's poller sees no version, then a complete one."""
    try:
        fsutil.rename_noreplace(tmp, target)
    except FileExistsError:
        raise ModelError(f"{target} appeared during export; versions are never overwritten") from None


def _write_version(base_path, name: str, version: int | None, fill) -> Path:
    """Create BASE/<name>/<version>/ atomically: claim the number, let
    `fill(tmp_dir, version)` write a uniquely named temporary folder (two exporters on
    one volume, both PID 1 in their containers, never share one), rename it into place
    only when complete, then drop the claim. A failure leaves no version folder."""
    if not _NAME_RE.match(name or ""):
        raise ConfigError(f"model name must be letters, digits, '.', '_' or '-' (got {name!r})")
    if version is not None and (isinstance(version, bool) or int(version) < 1):
        raise ConfigError(f"version must be a positive integer, got {version!r}")
    model_dir = Path(base_path) / name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        version, claim = claim_version(model_dir, version)
    except OSError as exc:
        raise ModelError(f"cannot create {model_dir}: {exc.strerror or exc}") from None
    target = model_dir / str(version)
    tmp = model_dir / f"{TMP_PREFIX}{version}-{fsutil.unique_token()}"
    try:
        fill(tmp, version)
        _rename_into_place(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot write SavedModel to {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(claim, ignore_errors=True)
    return target


# ----------------------------------------------------------------- S3 version claims
# S3 has no rename and no mkdir: the claim is an object BASE/<name>/.claim-<version>
# created with a conditional put (If-None-Match: *, honoured by AWS S3 since 2024-08 and
# by recent MinIO), so of two exporters only one gets a number. Listing sees no
# `.claim-N` "folder" (it is an object, not a prefix), so pollers ignore it.


def _s3_put_claim(client, bucket: str, key: str, body: bytes) -> str:
    """Create `key` unless it exists: "created", "exists", or "unconditional" where the
    store refuses conditional puts (then it is a plain put, as exports did before)."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
    except Exception as exc:  # noqa: BLE001 - botocore's ClientError, without importing botocore
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return "exists"  # the key exists (412) or a concurrent put of it is running (409)
        if code != "NotImplemented" and status != 501:  # 501: the store rejects If-None-Match itself
            raise
        log.warning("s3://%s/%s: the store refuses conditional puts; version claims there are best effort", bucket, key)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        return "unconditional"
    return "created"


def _s3_claim(client, bucket: str, model_prefix: str, first: int) -> tuple[int, str]:
    body = (fsutil.owner() + "\n").encode()
    number = int(first)
    for _ in range(_CLAIM_TRIES):
        key = f"{model_prefix}{CLAIM_PREFIX}{number}"
        result = _s3_put_claim(client, bucket, key, body)
        if result != "exists":
            # Put our own claim again: a store that accepts it ignores If-None-Match, so claims
            # there cannot stop two exporters from taking one number (warn: best effort, as before).
            if result == "created" and _s3_put_claim(client, bucket, key, body) == "created":
                log.warning(
                    "s3://%s/%s: the store ignores conditional puts (If-None-Match); two concurrent exports "
                    "could pick the same version number there", bucket, key,
                )
            if not client.list_objects_v2(Bucket=bucket, Prefix=f"{model_prefix}{number}/", MaxKeys=1).get("Contents"):
                return number, key
            client.delete_object(Bucket=bucket, Key=key)  # finished just before we looked
        number += 1
    raise ModelError(f"s3://{bucket}/{model_prefix}: no free version number after {_CLAIM_TRIES} tries")


def _s3_delete_prefix(client, bucket: str, prefix: str) -> None:
    """Best effort: remove a failed upload, so no half version stays under an integer name."""
    try:
        while True:
            page = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if not keys:
                return
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except Exception as exc:  # noqa: BLE001 - the upload's own error matters more
        log.warning("could not remove the partial upload s3://%s/%s: %s", bucket, prefix, exc)


@contextlib.contextmanager
def s3_version_claim(client, bucket: str, model_prefix: str, first: int) -> Iterator[int]:
    """Claim the first free version number >= `first` under s3://bucket/<model_prefix>
    (ends in '/') for the body of the `with`; upload the version there inside it.

    On an error inside, the objects uploaded under <model_prefix><version>/ are deleted.
    The claim is dropped at the end either way; once the upload is done, the version's
    own objects keep later exporters off the number.
    """
    number, key = _s3_claim(client, bucket, model_prefix, first)
    try:
        yield number
    except BaseException:
        _s3_delete_prefix(client, bucket, f"{model_prefix}{number}/")
        raise
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove the version claim s3://%s/%s: %s", bucket, key, exc)


def _stamp(version_dir: Path, meta: dict, name: str) -> None:
    """assets.extra of a version: its imfuse metadata, and TF Serving's warm-up requests for model `name`."""
    (version_dir / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    (version_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    write_warmup_requests(version_dir / WARMUP_FILE, name, int(meta["embedding_dim"]))


def export_saved_model(
    model: "StyleTransferModel",
    base_path: str | os.PathLike,
    name: str = MODEL_NAME,
    version: int | None = None,
) -> Path:
    """Write BASE/<name>/<version>/ atomically; returns the version folder.

    `version=None` takes the highest existing version + 1 (1 for a new model).
    """
    import tensorflow as tf

    def fill(tmp: Path, number: int) -> None:
        module = build_serving_module(model)
        tf.saved_model.save(module, str(tmp), signatures={key: getattr(module, key) for key in SIGNATURES})
        _stamp(tmp, _metadata(model, number), name)

    return _write_version(base_path, name, version, fill)


def publish_saved_model(
    src: str | os.PathLike,
    base_path: str | os.PathLike,
    name: str = MODEL_NAME,
    version: int | None = None,
) -> Path:
    """Publish an already exported SavedModel folder (e.g. the registered one) as a new
    version, so serving loads exactly the graph and variables that were registered.

    Only the stamps in `assets.extra` (version number, model name of the warm-up
    requests) are rewritten for the new place.
    """
    src = Path(src)
    if not is_saved_model(src):
        raise ModelError(f"{src} is not a SavedModel folder (no saved_model.pb)")
    meta = read_export_metadata(src)

    def fill(tmp: Path, number: int) -> None:
        shutil.copytree(src, tmp)
        _stamp(tmp, {**meta, "version": number}, name)

    return _write_version(base_path, name, version, fill)


REGISTRY_SAVED_MODEL = "saved_model"


def package_model(keras_path: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """The registry's model artefact folder: the trainable `.keras` file (for
    `imfuse stylize --method model` and fine-tuning) plus `saved_model/`, the exact
    SavedModel with serving signatures that TF Serving will load once published."""
    import tempfile

    from imfuse.networks import load_model

    keras_path, dst = Path(keras_path), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(keras_path, dst / keras_path.name)
    with tempfile.TemporaryDirectory(prefix="imfuse-package-") as scratch:
        version_dir = export_saved_model(load_model(keras_path), scratch, name=MODEL_NAME, version=1)
        shutil.move(str(version_dir), str(dst / REGISTRY_SAVED_MODEL))
    return dst


def read_export_metadata(version_dir: str | os.PathLike) -> dict:
    """The imfuse metadata of an exported SavedModel; anything else -> ModelError."""
    try:
        return json.loads((Path(version_dir) / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{version_dir}: not an imfuse export ({METADATA_FILE}: {exc})") from None


def saved_model_precision(version_dir: str | os.PathLike) -> str:
    """Compute precision recorded in an imfuse export (exports from before it was recorded: float32)."""
    return read_export_metadata(version_dir).get("precision", "float32")


def packaged_saved_model(path: str | os.PathLike) -> Path | None:
    """The SavedModel inside a (downloaded) registry artefact folder, if it has one."""
    candidate = Path(path) / REGISTRY_SAVED_MODEL
    return candidate if is_saved_model(candidate) else None


def packaged_keras(path: str | os.PathLike) -> Path:
    """The one `.keras` model file of a (downloaded) registry artefact: the file itself, or
    the only one in the folder (ModelError for none or several)."""
    path = Path(path)
    found = [path] if path.is_file() and path.suffix == ".keras" else sorted(path.rglob("*.keras")) if path.is_dir() else []
    if len(found) != 1:
        raise ModelError(f"registry artefact {path} holds {len(found)} .keras files; expected one")
    return found[0]


def describe_signatures(version_dir: str | os.PathLike) -> dict[str, dict]:
    """{signature: {"inputs": {name: "DT_X [shape]"}, "outputs": {...}, "optional": [...]}} from saved_model.pb."""
    from tensorflow.core.framework import types_pb2

    from imfuse.serving.servable import read_signature_defs

    def text(info) -> str:
        dims = ", ".join("None" if d.size < 0 else str(d.size) for d in info.tensor_shape.dim)
        return f"{types_pb2.DataType.Name(info.dtype)} [{dims}]"

    return {
        key: {
            "inputs": {k: text(v) for k, v in sorted(sig.inputs.items())},
            "outputs": {k: text(v) for k, v in sorted(sig.outputs.items())},
            "optional": sorted(sig.defaults),
        }
        for key, sig in sorted(read_signature_defs(Path(version_dir)).items())
        if not key.startswith("__")
    }

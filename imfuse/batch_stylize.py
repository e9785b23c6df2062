"""Batch stylisation of many images with Beam RunInference (`imfuse batch-stylize`).

The files matched once (the summary's `matched`) are read with Beam's filesystems
(imfuse.data.sources.read_uri_bytes), validated with imfuse.images (bad inputs
go to OUT/quarantine.jsonl with the reason, as in the data step), stylised by the
exported SavedModel's `stylize_with_embedding` signature, and written as OUT/<stem>.png;
OUT/summary.json holds the counts (matched == written + quarantined).

The model handler is our own: Beam's TFModelHandlerTensor loads only `.keras` files
under Keras 3 and needs tensorflow-hub. Ours calls `tf.saved_model.load` on the export
(a `.keras` model is exported to a temporary SavedModel first) and computes the style
embedding once per loaded model, so each batch is one signature call. The same pipeline
runs on DirectRunner here and on Flink/Spark/Dataflow with the usual Beam options; on
remote runners pass a SavedModel on storage the workers can read.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from imfuse.beam_jobs import (
    Progress, finish, import_beam, last_line, make_runner, open_job, output_stem, pipeline_failed, pipeline_options,
    write_bytes, write_record,
)
from imfuse.errors import ConfigError, ImageError, ModelError
from imfuse.stylize import check_strength
from imfuse.versions import is_saved_model, saved_model_versions

SIGNATURE = "stylize_with_embedding"


@dataclass
class BatchConfig:
    """Options of one batch run; `beam_args` are passed to Beam's PipelineOptions."""

    model: str
    input_glob: str
    style: str
    output: str
    strength: float = 1.0
    preserve_color: bool = False
    max_side: int | None = None  # downscale contents whose longer side is larger
    batch_size: int = 4
    runner: str = "DirectRunner"
    beam_args: list[str] = field(default_factory=list)
    progress: bool = True

    def __post_init__(self) -> None:
        check_strength(self.strength, "--strength")
        if self.max_side is not None and self.max_side < 16:
            raise ConfigError(f"--max-side must be at least 16, got {self.max_side}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be positive, got {self.batch_size}")


# ---------------------------------------------------------------- model resolution


def resolve_saved_model(model: str, scratch: str) -> str:
    """A SavedModel version dir for `model`: a .keras file (exported into `scratch`),
    a version dir (has saved_model.pb), or a TF Serving model dir (highest version)."""
    path = Path(model)
    if path.suffix == ".keras":
        from imfuse.export import export_saved_model
        from imfuse.networks import load_model

        return str(export_saved_model(load_model(path), scratch, name="batch"))
    if is_saved_model(path):
        return str(path)
    if path.is_dir():
        versions = saved_model_versions(path)
        if versions:
            return str(versions[max(versions)])
    if not path.exists():
        raise ModelError(f"model not found: {model}")
    raise ModelError(
        f"{model} is neither a .keras file nor a SavedModel (no saved_model.pb in it or in a version folder)"
    )


# ---------------------------------------------------------------- per-element steps


def load_content(path: str, max_side: int | None):
    """path -> validate_content's verdict on its bytes; an unreadable file is a bad input too."""
    from imfuse.data.sources import read_uri_bytes

    try:
        data = read_uri_bytes(path)
    except ImageError as exc:
        return ("bad", path, str(exc))
    return validate_content((path, data), max_side)


def validate_content(item: tuple[str, bytes], max_side: int | None):
    """(path, bytes) -> ("ok", path, png_bytes, alpha_png|None) or ("bad", path, reason).

    Re-encoding the validated pixels as PNG makes the graph see what imfuse.images saw
    (EXIF orientation applied, TIFF/16-bit/CMYK converted) and keeps the alpha aside.
    """
    from PIL import Image

    from imfuse.images import encode_pil, open_validated

    path, data = item
    try:
        im = open_validated(data, path)
    except ImageError as exc:
        return ("bad", path, str(exc))
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(16, round(im.width * scale)), max(16, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS)
    if im.mode == "RGBA":
        return ("ok", path, encode_pil(im.convert("RGB")), encode_pil(im.getchannel("A")))
    return ("ok", path, encode_pil(im), None)


def write_output(item, output: str, colliding: frozenset[str]):
    """Write one stylised PNG (alpha re-attached) -> ("written", path) or ("bad", path, reason)."""
    from apache_beam.io.filesystems import FileSystems

    path, alpha, result = item
    if "error" in result:
        return ("bad", path, result["error"])
    png = result["png"]
    if alpha is not None:
        from PIL import Image

        from imfuse.images import encode_pil

        im = Image.open(io.BytesIO(png)).convert("RGB")
        im.putalpha(Image.open(io.BytesIO(alpha)))
        png = encode_pil(im)
    write_bytes(FileSystems.join(output, output_stem(path, colliding) + ".png"), png)
    return ("written", path)


# ------------------------------------------------------------------- model handler


class _LoadedStylizer:
    """What load_model returns: the signature plus the style embedding computed once."""

    def __init__(self, module, embedding):
        self.module = module  # keeps the restored variables alive
        self.signature = module.signatures[SIGNATURE]
        self.embedding = embedding


def make_model_handler(model_dir: str, style_bytes: bytes, strength: float = 1.0,
                       preserve_color: bool = False, batch_size: int = 4):
    """A keyed RunInference handler over an exported SavedModel (keys: input paths); its
    class is defined here so importing imfuse.batch_stylize does not import Beam/TensorFlow."""
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult

    class SavedModelStylizer(ModelHandler):
        """RunInference handler: tf.saved_model.load + the `stylize_with_embedding` signature."""

        def __init__(self, model_dir: str, style_bytes: bytes, strength: float, preserve_color: bool, batch_size: int):
            super().__init__()
            self.model_dir = model_dir
            self.style_bytes = style_bytes
            self.strength = float(strength)
            self.preserve_color = bool(preserve_color)
            self.batch_size = int(batch_size)

        def load_model(self) -> _LoadedStylizer:
            import tensorflow as tf

            module = tf.saved_model.load(self.model_dir)
            embedding = module.signatures["style_embedding"](style_image=tf.constant([self.style_bytes]))
            return _LoadedStylizer(module, embedding["embedding"])

        def _call(self, model: _LoadedStylizer, contents: Sequence[bytes]) -> list[bytes]:
            import tensorflow as tf

            out = model.signature(
                content_image=tf.constant(list(contents), tf.string),
                embedding=model.embedding,
                strength=tf.constant([self.strength], tf.float32),
                preserve_color=tf.constant([self.preserve_color]),
                mask_image=tf.constant([b""]),
            )
            return list(out["stylized_image"].numpy())

        def run_inference(self, batch: Sequence[bytes], model: _LoadedStylizer, inference_args=None):
            import tensorflow as tf

            try:
                results = [{"png": png} for png in self._call(model, batch)]
            except tf.errors.InvalidArgumentError:
                # One bad element must not sink its batch: retry one by one.
                results = []
                for content in batch:
                    try:
                        results.append({"png": self._call(model, [content])[0]})
                    except tf.errors.InvalidArgumentError as exc:
                        results.append({"error": f"model rejected the image: {last_line(exc.message)}"})
            return [PredictionResult(example, inference) for example, inference in zip(batch, results)]

        def get_num_bytes(self, batch: Sequence[bytes]) -> int:
            return sum(len(b) for b in batch)

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": self.batch_size}

        def get_metrics_namespace(self) -> str:
            return "imfuse_batch_stylize"

    return KeyedModelHandler(SavedModelStylizer(model_dir, style_bytes, strength, preserve_color, batch_size))


# ------------------------------------------------------------------------ pipeline


def run_batch_stylize(config: BatchConfig) -> dict[str, Any]:
    """Run the pipeline to completion; returns the summary (also written to OUT/summary.json)."""
    beam = import_beam()
    from apache_beam.ml.inference.base import RunInference

    output = config.output
    style_bytes, style_name, paths, colliding = open_job(config.style, config.input_glob, output)

    start = time.perf_counter()
    progress = Progress(len(paths), config.progress, desc="batch-stylize", unit="img")
    with tempfile.TemporaryDirectory(prefix="imfuse-batch-") as scratch:
        model_dir = resolve_saved_model(config.model, scratch)
        handler = make_model_handler(
            model_dir, style_bytes, config.strength, config.preserve_color, config.batch_size
        )
        options, runner_name = pipeline_options(config.runner, config.beam_args)
        try:
            with beam.Pipeline(runner=make_runner(runner_name), options=options) as p:
                checked = (
                    p
                    | "Paths" >> beam.Create(paths)
                    | "Spread" >> beam.Reshuffle()
                    | "ReadValidate" >> beam.Map(load_content, config.max_side)
                )
                bad = checked | "Rejected" >> beam.Filter(lambda r: r[0] == "bad")
                good = checked | "Accepted" >> beam.Filter(lambda r: r[0] == "ok")
                alphas = good | "Alpha" >> beam.Map(lambda r: (r[1], r[3]))
                stylized = (
                    good
                    | "Key" >> beam.Map(lambda r: (r[1], r[2]))
                    | "Stylize" >> RunInference(handler)
                    | "Inference" >> beam.Map(lambda kv: (kv[0], kv[1].inference))
                )
                written = (
                    ({"alpha": alphas, "result": stylized})
                    | "Join" >> beam.CoGroupByKey()
                    | "Flatten" >> beam.Map(lambda kv: (kv[0], kv[1]["alpha"][0], kv[1]["result"][0]))
                    | "Write" >> beam.Map(write_output, output, colliding)
                )
                _ = (
                    (bad, written)
                    | "Done" >> beam.Flatten()
                    | "Progress" >> beam.Map(progress)
                    | "Record" >> beam.Map(write_record, output)
                )
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - runner failures carry long, nested messages
            raise pipeline_failed("batch", exc) from None
        finally:
            progress.close()
    summary = finish(output, {
        "input": config.input_glob,
        "model": config.model,
        "style": style_name,
        "strength": float(config.strength),
        "preserve_color": bool(config.preserve_color),
        "max_side": config.max_side,
        "output": output,
    }, matched=len(paths))
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary

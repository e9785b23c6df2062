"""Batch stylisation of many images with Beam RunInference (`imfuse batch-stylize`).

Files are matched and read with Beam's fileio, validated with imfuse.images (bad inputs
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

import hashlib
import io
import json
import posixpath
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from imfuse.errors import ConfigError, DataError, ModelError
from imfuse.stylize import check_strength
from imfuse.versions import is_saved_model, version_dirs

SIGNATURE = "stylize_with_embedding"
QUARANTINE_FILE = "quarantine.jsonl"
SUMMARY_FILE = "summary.json"


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
        versions = {v: p for v, p in version_dirs(path).items() if is_saved_model(p)}
        if versions:
            return str(versions[max(versions)])
    if not path.exists():
        raise ModelError(f"model not found: {model}")
    raise ModelError(
        f"{model} is neither a .keras file nor a SavedModel (no saved_model.pb in it or in a version folder)"
    )


# ---------------------------------------------------------------- per-element steps


def output_name(path: str, colliding: frozenset[str]) -> str:
    """<stem>.png; stems shared by several inputs get a short hash of the path to stay unique."""
    stem = posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0] or "image"
    if stem in colliding:
        stem = f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    return stem + ".png"


def colliding_stems(paths: Iterable[str]) -> frozenset[str]:
    seen: set[str] = set()
    dup: set[str] = set()
    for p in paths:
        stem = posixpath.splitext(posixpath.basename(p.replace("\\", "/")))[0] or "image"
        (dup if stem in seen else seen).add(stem)
    return frozenset(dup)


def validate_content(item: tuple[str, bytes], max_side: int | None):
    """(path, bytes) -> ("ok", path, png_bytes, alpha_png|None) or ("bad", path, reason).

    Re-encoding the validated pixels as PNG makes the graph see what imfuse.images saw
    (EXIF orientation applied, TIFF/16-bit/CMYK converted) and keeps the alpha aside.
    """
    from PIL import Image

    from imfuse.errors import ImageError
    from imfuse.images import open_validated

    path, data = item
    try:
        im = open_validated(data, path)
    except ImageError as exc:
        return ("bad", path, str(exc))
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(16, round(im.width * scale)), max(16, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS)
    alpha = None
    if im.mode == "RGBA":
        alpha = _png(im.getchannel("A"))
        im = im.convert("RGB")
    return ("ok", path, _png(im), alpha)


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_output(item, output: str, colliding: frozenset[str]):
    """Write one stylised PNG (alpha re-attached) -> ("written", path) or ("bad", path, reason)."""
    from apache_beam.io.filesystems import FileSystems

    path, alpha, result = item
    if "error" in result:
        return ("bad", path, result["error"])
    png = result["png"]
    if alpha is not None:
        from PIL import Image

        im = Image.open(io.BytesIO(png)).convert("RGB")
        im.putalpha(Image.open(io.BytesIO(alpha)))
        png = _png(im)
    target = FileSystems.join(output, output_name(path, colliding))
    with FileSystems.create(target) as fh:
        fh.write(png)
    return ("written", path)


# ------------------------------------------------------------------- model handler


class _LoadedStylizer:
    """What load_model returns: the signature plus the style embedding computed once."""

    def __init__(self, module, embedding):
        self.module = module  # keeps the restored variables alive
        self.signature = module.signatures[SIGNATURE]
        self.embedding = embedding


def _model_handler_class():
    """Defined lazily so importing imfuse.batch_stylize does not import Beam/TensorFlow."""
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

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
                        results.append({"error": f"model rejected the image: {_last_line(exc.message)}"})
            return [PredictionResult(example, inference) for example, inference in zip(batch, results)]

        def get_num_bytes(self, batch: Sequence[bytes]) -> int:
            return sum(len(b) for b in batch)

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": self.batch_size}

        def get_metrics_namespace(self) -> str:
            return "imfuse_batch_stylize"

    return SavedModelStylizer


def _last_line(message: str) -> str:
    lines = [ln.strip() for ln in (message or "").splitlines() if ln.strip() and not ln.strip().startswith("[[")]
    return lines[-1] if lines else "invalid image"


def make_model_handler(model_dir: str, style_bytes: bytes, strength: float = 1.0,
                       preserve_color: bool = False, batch_size: int = 4):
    """A keyed RunInference handler over an exported SavedModel (keys: input paths)."""
    from apache_beam.ml.inference.base import KeyedModelHandler

    cls = _model_handler_class()
    return KeyedModelHandler(cls(model_dir, style_bytes, strength, preserve_color, batch_size))


# ------------------------------------------------------------------------ pipeline


def _quarantine_line(record) -> str:
    _, path, reason = record
    return json.dumps({"source": path, "reason": reason}, ensure_ascii=False)


class _Progress:
    """A tqdm bar per process, advanced as outputs are finished (DirectRunner: one bar)."""

    def __init__(self, total: int, enabled: bool, desc: str = "batch-stylize", unit: str = "img"):
        self.total, self.enabled, self.desc, self.unit, self.bar = total, enabled, desc, unit, None

    def __call__(self, record):
        if self.enabled:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit)
            self.bar.update(1)
        return record

    def __getstate__(self):  # the bar stays in its process; workers make their own
        return {**self.__dict__, "bar": None}


def _match(glob: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match([glob])
    except Exception as exc:  # noqa: BLE001 - bad scheme, unreadable dir, ...
        raise DataError(f"cannot list {glob}: {exc}") from None
    return sorted(m.path for r in results for m in r.metadata_list)


def run_batch_stylize(config: BatchConfig) -> dict[str, Any]:
    """Run the pipeline to completion; returns the summary (also written to OUT/summary.json)."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    from imfuse.errors import ImageError
    from imfuse.images import read_source_bytes, decode_image

    style_bytes, style_name = read_source_bytes(config.style)
    decode_image(style_bytes, style_name)  # refuse a bad style before starting anything
    paths = _match(config.input_glob)
    if not paths:
        raise DataError(f"no files match {config.input_glob}")
    colliding = colliding_stems(paths)
    output = config.output
    if not FileSystems.exists(output):
        try:
            FileSystems.mkdirs(output)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"cannot create output directory {output}: {exc}") from None

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imfuse-batch-") as scratch:
        model_dir = resolve_saved_model(config.model, scratch)
        handler = make_model_handler(
            model_dir, style_bytes, config.strength, config.preserve_color, config.batch_size
        )
        options = PipelineOptions([f"--runner={config.runner}", *config.beam_args])
        progress = _Progress(len(paths), config.progress)
        summary_base = {
            "input": config.input_glob,
            "model": config.model,
            "style": style_name,
            "strength": float(config.strength),
            "preserve_color": bool(config.preserve_color),
            "max_side": config.max_side,
            "output": output,
        }
        try:
            with beam.Pipeline(options=options) as p:
                files = (
                    p
                    | "Match" >> fileio.MatchFiles(config.input_glob)
                    | "Read" >> fileio.ReadMatches()
                    | "Bytes" >> beam.Map(lambda f: (f.metadata.path, f.read()))
                )
                checked = files | "Validate" >> beam.Map(validate_content, config.max_side)
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
                failed = written | "WriteFailed" >> beam.Filter(lambda r: r[0] == "bad")
                ok = written | "Written" >> beam.Filter(lambda r: r[0] == "written")
                quarantined = (bad, failed) | "AllBad" >> beam.Flatten()
                _ = (
                    (ok, quarantined)
                    | "Done" >> beam.Flatten()
                    | "Progress" >> beam.Map(progress)
                )
                _ = (
                    quarantined
                    | "QuarantineJson" >> beam.Map(_quarantine_line)
                    | "QuarantineWrite"
                    >> beam.io.WriteToText(
                        FileSystems.join(output, "quarantine"),
                        file_name_suffix=".jsonl",
                        shard_name_template="",
                        num_shards=1,
                    )
                )
                counts = {
                    name: pcoll | f"Count{name}" >> beam.combiners.Count.Globally()
                    for name, pcoll in (("matched", files), ("written", ok), ("quarantined", quarantined))
                }
                _ = (
                    p
                    | "SummarySeed" >> beam.Create([None])
                    | "Summary"
                    >> beam.Map(
                        _write_summary,
                        output,
                        summary_base,
                        **{k: beam.pvalue.AsSingleton(v) for k, v in counts.items()},
                    )
                )
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - runner failures carry long, nested messages
            raise ModelError(f"batch pipeline failed: {type(exc).__name__}: {_last_line(str(exc))[:500]}") from None
    summary = json.loads(_read_text(FileSystems.join(output, SUMMARY_FILE)))
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary


def _write_summary(_, output: str, base: dict, matched: int, written: int, quarantined: int) -> None:
    from apache_beam.io.filesystems import FileSystems

    summary = {**base, "matched": matched, "written": written, "quarantined": quarantined}
    with FileSystems.create(FileSystems.join(output, SUMMARY_FILE)) as fh:
        fh.write(json.dumps(summary, indent=2).encode())


def _read_text(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        return fh.read().decode()

"""The studio's routes (Starlette): one page, its static files and a small JSON API.

    GET  /                      the page            GET  /api/info       backend, limits
    GET  /api/gallery           demo styles         GET  /api/gallery/N  one style (JPEG)
    POST /api/stylize           form -> PNG (fast feed-forward model)
    POST /api/jobs              form -> Gatys job   GET  /api/jobs/ID    progress
    POST /api/jobs/ID/cancel    cancel              GET  /api/jobs/ID/result  PNG
    GET  /api/versions          compare choices     POST /api/compare    two outputs + metrics
    GET  /healthz               liveness

Forms are multipart: `content` (file), `style` (files) with `style_weight`, `gallery`
(names) with `gallery_weight`, `strength`, `preserve_color`, `mask` (file; white/opaque =
stylised), `size` (longer side to process at; empty = as uploaded). Errors are JSON
`{"error": one line, "field": the input at fault}`, never a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from imfuse.errors import ImfuseError, ServingError, TrackingError
from imfuse.images import ImageLimits, encode_png
from imfuse.studio.backends import Backend, LocalBackend, ServingBackend
from imfuse.studio.config import StudioConfig
from imfuse.studio.gallery import Gallery
from imfuse.studio.fit import check_fittable, run_fit
from imfuse.studio.gatys import GatysOptions, run_gatys
from imfuse.studio.inputs import FieldError, StylizeRequest, build_request, decode_upload, for_field
from imfuse.studio.inputs import parse_float, parse_int
from imfuse.studio.jobs import DONE, JobManager
from imfuse.studio.versions import VersionCatalog, VersionRef
from imfuse.style_fit import StyleFitConfig

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("imfuse.studio")


def error_response(exc: BaseException) -> JSONResponse:
    """One-line JSON error: 400 for bad input, 502 when serving/MLflow failed, 500 otherwise."""
    if isinstance(exc, ImfuseError):
        status = 502 if isinstance(exc, (ServingError, TrackingError)) else 400
        return JSONResponse({"error": str(exc), "field": getattr(exc, "field", None)}, status_code=status)
    log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}", "field": None}, status_code=500)


class Studio:
    """Holds the backend, gallery, jobs and compare catalog behind the routes."""

    def __init__(self, config: StudioConfig, backend: Backend | None = None, gallery: Gallery | None = None):
        config.validate()
        self.config = config
        if backend is None:
            backend = (ServingBackend(config.target, config.model_name, rest=config.rest, timeout_s=config.timeout_s)
                       if config.target else LocalBackend(config.model))
        self.backend = backend
        self.gallery = gallery or Gallery()
        self.jobs = JobManager()
        self.catalog = VersionCatalog(config, None if config.target else backend)
        self.limits = ImageLimits(max_bytes=config.max_upload_bytes)

    # ------------------------------------------------------------------ forms
    async def read_form(self, request: Request):
        length = request.headers.get("content-length")
        cap = 8 * self.config.max_upload_bytes
        if length and length.isdigit() and int(length) > cap:
            raise FieldError("content", f"the upload is {int(length)} bytes, over the {cap}-byte limit")
        return await request.form(max_files=64, max_fields=256)

    async def _file(self, upload) -> tuple[bytes, str]:
        if not isinstance(upload, UploadFile):
            return b"", ""
        return await upload.read(), upload.filename or ""

    async def stylize_request(self, form, longer_side: int | None) -> StylizeRequest:
        """Decode and validate every input of a form (in a worker thread: decoding is CPU work)."""
        content = await self._file(form.get("content"))
        if not content[0] and not content[1]:
            raise FieldError("content", "give a content image: drop or pick a photo")
        uploads = [await self._file(f) for f in form.getlist("style")]
        upload_weights = form.getlist("style_weight")
        names = [str(n) for n in form.getlist("gallery")]
        gallery_weights = form.getlist("gallery_weight")
        mask = await self._file(form.get("mask"))
        strength = parse_float("strength", form.get("strength"), 1.0, 0.0, 1.0)
        preserve = str(form.get("preserve_color", "")).lower() in ("1", "true", "on", "yes")

        def work() -> StylizeRequest:
            content_rgb = decode_upload("content", content[0], content[1], self.limits)
            styles = []
            for i, (data, name) in enumerate(uploads):
                weight = parse_float("style", upload_weights[i] if i < len(upload_weights) else None, 1.0, 0.0, 100.0)
                styles.append((decode_upload("style", data, name, self.limits), weight))
            for i, name in enumerate(names):
                weight = parse_float("style", gallery_weights[i] if i < len(gallery_weights) else None, 1.0, 0.0, 100.0)
                path = for_field("style", lambda: self.gallery.path(name))
                styles.append((decode_upload("style", path.read_bytes(), path.name, self.limits), weight))
            return build_request(content_rgb, styles, strength=strength, preserve_color=preserve,
                                 mask_file=mask if (mask[0] or mask[1]) else None,
                                 longer_side=longer_side, limits=self.limits)

        return await run_in_threadpool(work)

    def size_field(self, form) -> int | None:
        return parse_int("size", form.get("size"), None, 16, self.config.max_side)


def _png_response(image, elapsed_ms: float, backend: str) -> Response:
    return Response(encode_png(image), media_type="image/png", headers={
        "X-Imfuse-Elapsed-Ms": f"{elapsed_ms:.0f}", "X-Imfuse-Backend": backend.encode("ascii", "replace").decode(),
        "Cache-Control": "no-store",
    })


def create_app(config: StudioConfig | None = None, *, backend: Backend | None = None,
               gallery: Gallery | None = None) -> Starlette:
    """The ASGI app; `backend`/`gallery` override the ones the config implies (tests)."""
    studio = Studio(config or StudioConfig(), backend, gallery)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def info(request: Request) -> Response:
        cfg = studio.config
        return JSONResponse({
            "backend": studio.backend.description,
            "target": cfg.target,
            "mlflow": bool(cfg.mlflow_uri),
            "max_side": cfg.max_side,
            "gatys": {"steps": GatysOptions().steps, "size": GatysOptions().size,
                      "max_steps": cfg.max_gatys_steps, "max_size": cfg.max_gatys_size},
            "fit": {"steps": StyleFitConfig().steps, "max_steps": cfg.max_gatys_steps,
                    "available": isinstance(studio.backend, LocalBackend)},
        })

    async def gallery_list(request: Request) -> Response:
        names = await run_in_threadpool(studio.gallery.names)
        return JSONResponse({"styles": [{"name": n, "url": f"/api/gallery/{n}"} for n in names]})

    async def gallery_file(request: Request) -> Response:
        try:
            path = await run_in_threadpool(studio.gallery.path, request.path_params["name"])
        except ImfuseError as exc:
            return JSONResponse({"error": str(exc), "field": "style"}, status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def stylize(request: Request) -> Response:
        try:
            form = await studio.read_form(request)
            req = await studio.stylize_request(form, studio.size_field(form))
            result = await run_in_threadpool(studio.backend.stylize, req)
            return _png_response(result.image, result.elapsed_ms, result.backend)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one JSON line
            return error_response(exc)

    async def job_start(request: Request) -> Response:
        try:
            cfg = studio.config
            form = await studio.read_form(request)
            if form.get("kind") == "fit":
                steps = parse_int("steps", form.get("steps"), StyleFitConfig().steps, 1, cfg.max_gatys_steps)
                req = await studio.stylize_request(form, studio.size_field(form))
                check_fittable(studio.backend, req)
                job = studio.jobs.submit(lambda on_step: run_fit(studio.backend, req, steps, on_step), steps, "fit")
                return JSONResponse(job.to_dict(), status_code=202)
            steps = parse_int("steps", form.get("steps"), GatysOptions().steps, 1, cfg.max_gatys_steps)
            size = studio.size_field(form)
            req = await studio.stylize_request(form, None)
            size = min(size or min(max(req.content.shape[:2]), GatysOptions().size), cfg.max_gatys_size)
            options = GatysOptions(steps=steps, size=max(16, size))
            job = studio.jobs.submit(lambda on_step: run_gatys(req, options, on_step), total=steps)
            return JSONResponse(job.to_dict(), status_code=202)
        except Exception as exc:  # noqa: BLE001
            return error_response(exc)

    def _job(request: Request):
        job = studio.jobs.get(request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such job (finished jobs are kept for a while only)")
        return job

    async def job_status(request: Request) -> Response:
        return JSONResponse(_job(request).to_dict())

    async def job_cancel(request: Request) -> Response:
        job = _job(request)
        studio.jobs.cancel(job.id)
        return JSONResponse(job.to_dict())

    async def job_result(request: Request) -> Response:
        job = _job(request)
        if job.state != DONE or job.result is None:
            return JSONResponse({"error": f"the job is {job.state}, not done", "field": None}, status_code=409)
        return _png_response(job.result, 0.0, "fitted style" if job.kind == "fit" else "gatys optimisation")

    async def versions(request: Request) -> Response:
        try:
            options, warnings = await run_in_threadpool(studio.catalog.options)
            return JSONResponse({"options": options, "warnings": warnings})
        except Exception as exc:  # noqa: BLE001
            return error_response(exc)

    async def compare(request: Request) -> Response:
        try:
            form = await studio.read_form(request)
            refs = [for_field(side, lambda: VersionRef.parse(str(form.get(side, "")))) for side in ("a", "b")]
            req = await studio.stylize_request(form, studio.size_field(form))

            def run_side(ref: VersionRef) -> dict:
                try:
                    backend, card = studio.catalog.resolve(ref)
                    result = backend.stylize(req)
                except ImfuseError as exc:  # keep its kind (bad input 400, serving/MLflow 502), name the side
                    exc.field = "a" if ref is refs[0] else "b"
                    raise
                png = base64.b64encode(encode_png(result.image)).decode("ascii")
                return {**card.to_dict(), "elapsed_ms": round(result.elapsed_ms, 1), "backend": result.backend,
                        "image": f"data:image/png;base64,{png}"}

            results = [await run_in_threadpool(run_side, ref) for ref in refs]
            return JSONResponse({"results": results})
        except Exception as exc:  # noqa: BLE001
            return error_response(exc)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": exc.detail, "field": None}, status_code=exc.status_code)

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/info", info),
        Route("/api/gallery", gallery_list),
        Route("/api/gallery/{name}", gallery_file),
        Route("/api/stylize", stylize, methods=["POST"]),
        Route("/api/jobs", job_start, methods=["POST"]),
        Route("/api/jobs/{job_id}", job_status),
        Route("/api/jobs/{job_id}/cancel", job_cancel, methods=["POST"]),
        Route("/api/jobs/{job_id}/result", job_result),
        Route("/api/versions", versions),
        Route("/api/compare", compare, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        studio.jobs.shutdown()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan,
                    max_body_size=8 * studio.config.max_upload_bytes)
    app.state.studio = studio
    return app


__all__ = ["create_app", "Studio", "error_response"]

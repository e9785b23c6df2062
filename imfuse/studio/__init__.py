"""imfuse studio: a small web app (Starlette + uvicorn) for stylising images in a browser
and comparing model versions side by side.

Modules, one job each: `config` (StudioConfig), `inputs` (uploads -> validated arrays,
with the CLI's one-line errors), `backends` (the shipped/local model or a serving target),
`gatys` and `jobs` (cancellable Gatys optimisation in the background), `gallery` (the
demo styles), `versions` (what to compare and its MLflow metrics), `app` (routes) and
`static/` (one page, plain HTML/CSS/JS). `imfuse studio` (imfuse/cli/studio.py) starts it.
"""

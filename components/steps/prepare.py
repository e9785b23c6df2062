"""Pipeline step 1: a prepared dataset (Beam ingest) as a KFP `Dataset` artefact.

Empty sources mean "demo data": `imfuse data demo` images are generated inside the step,
so a pipeline run needs nothing but the image. The dataset is cacheable: the same
sources and sizes give the same dataset (its identity is the manifest hash).
"""

from __future__ import annotations

import tempfile


DEMO_IMAGES = 12  # per kind: enough for train/eval/unseen splits of both kinds


def prepared_sizes(image_size: int) -> dict[str, int]:
    """Stored shorter sides: the training crop size, and twice it for the large style copy."""
    size = max(int(image_size), 32)
    return {"content_size": size, "style_size": size, "style_large_size": 2 * size}


def prepare_stage(out_dir: str, content_source: str, styles_source: str, image_size: int, progress: bool = False) -> dict:
    """Ingest the sources (or fresh demo images) into `out_dir`; returns the manifest."""
    from imfuse.data.demo import demo_sources, write_demo_data
    from imfuse.data.prepare import PrepareConfig, prepare_dataset

    content_source, styles_source = content_source.strip(), styles_source.strip()
    with tempfile.TemporaryDirectory(prefix="imfuse-demo-") as tmp:
        if demo_sources(content_source, styles_source):
            # demo landscapes need >= 66 px (imfuse.data.demo draws features of h // 6 > 10 px)
            demo_size = min(max(128, 2 * int(image_size)), 512)
            write_demo_data(tmp, n_content=DEMO_IMAGES, n_styles=DEMO_IMAGES, size=demo_size)
            content_source, styles_source = f"{tmp}/content", f"{tmp}/styles"
        cfg = PrepareConfig(
            content=content_source,
            styles=styles_source,
            out=out_dir,
            progress=progress,
            **prepared_sizes(image_size),
        )
        return prepare_dataset(cfg)


def dataset_metadata(manifest: dict, demo: bool) -> dict:
    """What the KFP UI shows next to the Dataset artefact: its hash and split counts."""
    counts = manifest["counts"]
    meta = {
        "dataset_hash": manifest["dataset_hash"],
        "demo_data": demo,
        "accepted": counts["accepted"],
        "quarantined": counts["quarantined"],
        "duplicates": counts["duplicates"],
    }
    for kind in ("content", "style"):
        for split in ("train", "eval", "unseen"):
            if split in counts.get(kind, {}):
                meta[f"{kind}_{split}"] = counts[kind][split]
    return meta

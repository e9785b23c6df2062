"""KFP component `prepare-data`: a prepared dataset as a `Dataset` artefact (logic: steps/prepare.py)."""

# No `from __future__ import annotations`: KFP reads the real types of the signature.
from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_data(
    dataset: Output[Dataset],
    content_source: str = "",
    styles_source: str = "",
    image_size: int = 256,
):
    """Validate, dedupe, split and resize images into TFRecords (demo images if no sources)."""
    from components.steps.prepare import dataset_metadata, prepare_stage

    manifest = prepare_stage(dataset.path, content_source, styles_source, image_size)
    dataset.metadata.update(dataset_metadata(manifest, demo=not content_source.strip()))
    print(f"prepared dataset {manifest['dataset_hash']}: {manifest['counts']['accepted']} images accepted")

import numpy as np
import pytest

from imfuse.color import preserve_color, rgb_to_yiq, yiq_to_rgb


def test_yiq_round_trip():
    rgb = np.random.default_rng(0).uniform(0, 1, (4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-5)


def test_preserve_color_keeps_content_chroma_and_stylized_luminance():
    rng = np.random.default_rng(1)
    content = rng.uniform(0.3, 0.7, (6, 6, 3)).astype(np.float32)
    stylized = rng.uniform(0.3, 0.7, (6, 6, 3)).astype(np.float32)
    out = preserve_color(content, stylized)
    np.testing.assert_allclose(rgb_to_yiq(out)[..., 0], rgb_to_yiq(stylized)[..., 0], atol=1e-4)
    np.testing.assert_allclose(rgb_to_yiq(out)[..., 1:], rgb_to_yiq(content)[..., 1:], atol=1e-4)
    with pytest.raises(ValueError):
        preserve_color(content, stylized[:3])

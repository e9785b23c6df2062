"""Local development stand-in for TF Serving, plus the client library.

`imfuse serve` speaks TF Serving's PredictionService/ModelService gRPC protocols and its
REST JSON over the same versioned SavedModel layout, so any TF Serving client works
against it; production runs the real `tensorflow/serving` image (see `serving/`).
Submodules import TensorFlow; import them directly (`imfuse.serving.client`, ...).
"""

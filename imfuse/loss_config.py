"""Default weights of the Gatys losses: the one source for LossWeights, TrainConfig and
the CLI flags (kept free of TensorFlow so configs import fast).

They go with the loss network's layer configuration (imfuse.lossnet: style on the first
conv of each VGG block with equal weights, content at block4_conv2). With style 1e3 a
200-step Adam Gatys run from the content image at 256 px ends with the style term about
4x the content term, showing the painting's strokes and palette while the objects stay
recognisable (README, "Loss configuration").
"""

CONTENT_WEIGHT = 1.0
STYLE_WEIGHT = 1000.0
TV_WEIGHT = 50.0

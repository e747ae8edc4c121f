"""skewless: a batch-first ML pipeline with a realtime sidecar that measures training-serving skew."""

__version__ = "0.1.0"

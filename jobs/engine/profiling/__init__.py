"""Profiling a model on ONNX Runtime: the measurements (measure.py), and the child process a
profile job runs them in (child.py), so that what it measures belongs to the model alone."""

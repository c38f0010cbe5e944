"""Exports of the models to other runtimes: ONNX (:mod:`rvrt.export.onnx`)."""

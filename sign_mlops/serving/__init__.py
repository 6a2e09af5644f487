"""Lightweight batch scorer: onnxruntime + numpy + pandas. Never imports TensorFlow or Prefect."""

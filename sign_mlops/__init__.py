"""Sign Language MNIST: data, training, evaluation, export and registry (no Prefect needed)."""

__version__ = "0.1.0"

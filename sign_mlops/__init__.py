"""sign-mlops: Sign Language MNIST trained, tracked and served, in layers that import only downward:
contract -> serving -> sign_model -> flows -> cli (tests/unit/test_layers.py keeps it so)."""

__version__ = "0.1.0"

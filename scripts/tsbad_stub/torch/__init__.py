"""A stand-in for torch, first on the path of the TSB-AD scripts: TSB-AD's utility module runs
`import torch.nn as nn` at import time, but none of the detectors and metrics we run uses it.
Any real use fails loudly. Never install torch for these scripts."""

from . import nn  # noqa: F401


def __getattr__(name):
    raise RuntimeError(f"torch is not installed (stub): torch.{name} was used")

"""Shared test set-up: offscreen Qt, a fixed torch thread count, tiny everything."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

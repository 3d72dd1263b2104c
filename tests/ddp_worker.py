"""One rank of a distributed test run: trains a job from a YAML config, then saves its own weights.

Run as ``python tests/ddp_worker.py CONFIG.yaml WEIGHTS_OUT.safetensors`` with COPYCAT_* or torchrun
variables set. Every rank saves its weights, so a test can check that all ranks hold the same network.
"""

import sys

import torch
from safetensors.torch import save_file

from copycat_nuke.config import TrainConfig, load_yaml
from copycat_nuke.errors import CopyCatError
from copycat_nuke.train import Trainer

if __name__ == "__main__":
    torch.set_num_threads(1)
    trainer = Trainer(load_yaml(TrainConfig, sys.argv[1]))
    try:
        trainer.run()
    except CopyCatError as error:
        print(f"copycat: error: {error}", file=sys.stderr)
        sys.exit(2)
    assert trainer.model is not None
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, sys.argv[2])

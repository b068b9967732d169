"""What PyTorch sees of the GPU Ray gave this trial, and how fast a matmul runs on it.

Prints one JSON metric line: cuda_available (1 or 0), device_name, the
CUDA_VISIBLE_DEVICES it was given, and the time of a size x size float32 matmul.
"""

import argparse
import json
import os
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--size", type=int, default=2048)
parser.add_argument("--repeats", type=int, default=20)
args = parser.parse_args()

cuda = torch.cuda.is_available()
device = torch.device("cuda" if cuda else "cpu")
if cuda:
    # two trials share one GPU with --gpus-per-trial 0.5: stay within half of its memory
    torch.cuda.set_per_process_memory_fraction(0.5)


def sync() -> None:
    if cuda:
        torch.cuda.synchronize()


a = torch.randn(args.size, args.size, device=device)
b = torch.randn(args.size, args.size, device=device)
(a @ b).sum().item()  # warm-up: kernels loaded, memory allocated
sync()
started = time.perf_counter()
for _ in range(args.repeats):
    c = a @ b
sync()
seconds = (time.perf_counter() - started) / args.repeats
print(
    json.dumps(
        {
            "cuda_available": int(cuda),
            "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
            "device_count": torch.cuda.device_count(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "torch_version": torch.__version__,
            "matmul_ms": round(seconds * 1000, 4),
            "tflops": round(2 * args.size**3 / seconds / 1e12, 3),
        }
    ),
    flush=True,
)

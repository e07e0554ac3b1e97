"""`lpft-bench bench --gpu`: the rows only an accelerator measures (G1, G2: a training step of the paper's
ResNet-50 and ViT-B/16 at 224 px on one GPU; G3: DDP scaling of that step over the machine's GPUs). Without a
GPU they are "not measured" in the table (bench_markdown), never estimated.

Each is a plain training step (SGD momentum 0.9, channels-last, bf16 autocast on CUDA) on random images, so it
measures the device and the model, not data loading; DDP runs one process per device with a fixed per-device
batch, so perfect scaling is k times one device's rate."""
from __future__ import annotations

import os
import statistics
import time

import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lpft_bench.analysis.bench_setup import Row

MODELS = {"G1": ("resnet50", "ResNet-50"), "G2": ("vit_base_patch16_224", "ViT-B/16")}
SCALING_MODEL = "resnet50"


def _steps(model: torch.nn.Module, device: torch.device, image_size: int, batch_size: int, steps: int,
           warmup: int, barrier=None) -> float:
    """Images/s of `steps` timed training steps after `warmup` untimed ones."""
    model.to(device, memory_format=torch.channels_last).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch_size,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if barrier:
        barrier()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch_size * steps / (time.perf_counter() - started)


def step_rate(arch: str, device: torch.device, image_size: int = 224, batch_size: int = 64, steps: int = 30,
              warmup: int = 5, repeats: int = 3) -> float:
    model = timm.create_model(arch, num_classes=1000, **({"img_size": image_size} if arch.startswith("vit") else {}))
    return statistics.median(_steps(model, device, image_size, batch_size, steps, warmup) for _ in range(repeats))


def _ddp_worker(rank: int, world: int, port: int, arch: str, image_size: int, batch_size: int, steps: int,
                warmup: int, results) -> None:
    cuda = torch.cuda.is_available()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        model = timm.create_model(arch, num_classes=1000).to(device, memory_format=torch.channels_last)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if cuda else None)
        rate = _steps(ddp, device, image_size, batch_size, steps, warmup, barrier=dist.barrier)
        totals = [None] * world
        dist.all_gather_object(totals, rate)
        if rank == 0:
            results.put(sum(totals))
    finally:
        dist.destroy_process_group()


def ddp_rate(world: int, arch: str = SCALING_MODEL, image_size: int = 224, batch_size: int = 64, steps: int = 30,
             warmup: int = 5, port: int = 29517) -> float:
    """Total images/s of `world` processes, one per device (CPU and gloo where there is no GPU)."""
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(world, port, arch, image_size, batch_size, steps, warmup, results),
                       nprocs=world, start_method="spawn")
    return results.get()


def measure_gpu_rows(image_size: int = 224, batch_size: int = 64, steps: int = 30, device_counts=None) -> list[Row]:
    """G1 to G3 on this machine's GPUs (the arguments shrink them for a test on a CPU)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    how = f"{name}, batch {batch_size}, {image_size} px, channels-last, bf16 autocast on CUDA, median of 3 runs of {steps} steps"
    rows = [Row(row_id, f"FT step throughput, {label} at {image_size} px, one device (plain step)",
                step_rate(arch, device, image_size, batch_size, steps), float("nan"), "images/s", float("nan"),
                notes=how) for row_id, (arch, label) in MODELS.items()]
    counts = device_counts or [k for k in (1, 2, 4, 8) if k <= max(torch.cuda.device_count(), 1)]
    rates = {k: ddp_rate(k, image_size=image_size, batch_size=batch_size, steps=steps) for k in counts}
    top = max(counts)
    rows.append(Row("G3", f"DDP scaling, {SCALING_MODEL} at {image_size} px, {top} devices vs one", rates[top],
                    top * rates[1], "images/s", rates[top] / (top * rates[1]),
                    notes=f"{how}; per-device batch {batch_size}; total images/s by device count: "
                          + ", ".join(f"{k}: {rate:.0f}" for k, rate in rates.items())))
    return rows

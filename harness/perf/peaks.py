"""The physical peaks the roofline uses: how fast this host's RAM can be read (a probe), how fast a GPU's memory
(NVML: max memory clock x bus width x 2 / 8) and its PCIe link (generation x lanes) are, and, on the RPC rig,
how fast loopback TCP carries bytes (a probe)."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from harness.perf.model import Peaks
from harness.units import MIB

# usable bytes per second per lane after line coding: PCIe 1.x-2.x 8b/10b, 3.0 onwards 128b/130b
PCIE_LANE_BYTES_S = {1: 250e6, 2: 500e6, 3: 984.6e6, 4: 1969e6, 5: 3938e6, 6: 7563e6}


def ram_read_bytes_s(n_bytes: int = 256 << 20, threads: int | None = None, repeats: int = 3) -> float:
    """The best of `repeats` reads of an `n_bytes` array split over `threads` threads (default: every CPU this
    process may use); numpy's reductions release the GIL, so the threads read in parallel."""
    threads = threads or len(os.sched_getaffinity(0))
    data = np.ones(n_bytes // 8, dtype=np.float64)
    chunks = np.array_split(data, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = max(best, data.nbytes / (time.perf_counter() - start))
    return best


def loopback_bytes_s(n_bytes: int = 128 << 20, repeats: int = 3) -> float:
    """The best of `repeats` transfers of `n_bytes` over a TCP connection on 127.0.0.1 (the RPC rig's bus)."""
    best = 0.0
    chunk = bytes(MIB)
    for _ in range(repeats):
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            received = [0]

            def receive() -> None:
                conn, _ = server.accept()
                with conn:
                    buffer = bytearray(MIB)
                    while received[0] < n_bytes:
                        got = conn.recv_into(buffer)
                        if not got:
                            break
                        received[0] += got

            reader = threading.Thread(target=receive)
            reader.start()
            with socket.create_connection(("127.0.0.1", port)) as client:
                start = time.perf_counter()
                for _ in range(n_bytes // len(chunk)):
                    client.sendall(chunk)
                reader.join()
                best = max(best, received[0] / (time.perf_counter() - start))
    return best


def gpu_peaks(nvml, index: int = 0) -> tuple[float, float] | None:
    """(memory bytes/s, PCIe bytes/s) of GPU `index` from NVML, or None without one."""
    if nvml is None:
        return None
    bus = nvml.memory_bus(index)
    gpus = nvml.describe_gpus()
    if bus is None or index >= len(gpus):
        return None
    clock_mhz, width_bits = bus
    gpu = gpus[index]
    gen, width = gpu.get("pcie_gen_max") or 0, gpu.get("pcie_width_max") or 0
    return clock_mhz * 1e6 * width_bits * 2 / 8, PCIE_LANE_BYTES_S.get(gen, 0.0) * width


def measure_peaks(rpc_rig: bool, nvml=None, gpu_index: int = 0) -> Peaks:
    """The peaks for this host's accelerator: on the RPC rig both devices are this host's RAM and the bus is
    loopback TCP; with a GPU, its memory and PCIe link from NVML."""
    ram = ram_read_bytes_s()
    if rpc_rig:
        return Peaks(ram, ram, loopback_bytes_s(),
                     {"cpu": "RAM read probe", "accel": "RAM read probe (the RPC server is on this host)",
                      "bus": "loopback TCP probe"})
    gpu = gpu_peaks(nvml, gpu_index)
    if gpu is None or not all(gpu):
        raise LookupError("NVML does not report this GPU's memory clock, bus width or PCIe link")
    return Peaks(ram, gpu[0], gpu[1], {"cpu": "RAM read probe", "accel": "NVML max memory clock x bus width",
                                       "bus": "NVML PCIe generation x lanes"})

"""The reserving process: `python -m harness.gpu.reserve DEVICE LIMIT_BYTES` creates a CUDA context on DEVICE
through the driver API (libcuda, no toolkit needed), allocates everything free beyond LIMIT_BYTES, prints
`reserved <bytes> free <bytes>` and holds it until it is killed. Dying releases the memory: the parent starts it
supervised (own process group, killed with the harness), so the reservation cannot outlive a run."""

from __future__ import annotations

import ctypes
import sys
import time


def _check(result: int, what: str) -> None:
    if result != 0:
        raise RuntimeError(f"{what} failed with CUDA error {result}")


def reservation_bytes(free_bytes: int, limit_bytes: int, granularity: int = 2 << 20) -> int:
    """How much to take so that `limit_bytes` stay free (0 when less than that is free already)."""
    extra = free_bytes - limit_bytes
    return max(0, extra // granularity * granularity)


def main(argv: list[str]) -> int:
    device_index, limit_bytes = int(argv[0]), int(argv[1])
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        print(f"error: no CUDA driver ({exc})", flush=True)
        return 3
    device, context = ctypes.c_int(), ctypes.c_void_p()
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    try:
        _check(cuda.cuInit(0), "cuInit")
        _check(cuda.cuDeviceGet(ctypes.byref(device), device_index), "cuDeviceGet")
        _check(cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device), "cuCtxCreate")
        _check(cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
        size = reservation_bytes(free.value, limit_bytes)
        pointer = ctypes.c_uint64()
        if size:
            _check(cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(size)), "cuMemAlloc")
        _check(cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
    except RuntimeError as exc:
        print(f"error: {exc}", flush=True)
        return 4
    print(f"reserved {size} free {free.value} total {total.value}", flush=True)
    while True:  # held until the parent stops this process
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""GPU-side helpers that need an NVIDIA driver: emulating a smaller card by reserving memory."""

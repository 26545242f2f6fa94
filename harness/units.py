"""Binary byte units, defined once: `MIB` (2**20 bytes) and `GIB` (2**30), the units of every `_mib` / `_gib`
figure (VRAM, model buffers, budgets, telemetry)."""

MIB = 1 << 20
GIB = 1 << 30

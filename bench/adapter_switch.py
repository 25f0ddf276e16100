"""LoRA adapter switching vs reloading the base model, and generation speed with the adapter on vs off.

Same process, same run, the real bundled model (`EmbeddedLlamaBackend`, SmolLM2-135M Q4_1):
1. Reload: a fresh `EmbeddedLlamaBackend` load of the base GGUF (the process cache is emptied first),
   median over `BENCH_RELOADS` loads.
2. Switch: the adapter on, then off, under the model lock as a request does it
   (`llama_set_adapters_lora` + KV reset), median over `BENCH_SWITCHES` switches each way. The
   adapter's one-time load into the model (`llama_adapter_lora_init`) is reported apart.
   Prints `RATIO adapter_switch_vs_reload <x>` (median switch / median reload; goal <= 0.05).
3. Generation: the same prompt, greedy, `max_tokens` 64, alternating adapter off and on, decode
   tokens/s (tokens after the first / time after the first). Prints
   `RATIO adapter_tokens_per_s_on_vs_off <x>`.

The adapter is the first `*.gguf` in data/adapters/, or a random rank-8 LoRA on q/k/v/o of every block
(`core.adapters.gguf_write.random_lora`, small weights so text stays text) written to a temp folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.adapters.gguf_info import read_gguf  # noqa: E402
from core.adapters.gguf_write import random_lora  # noqa: E402
from core.llm import AdapterChoice, ChatMessage, GenerationParams  # noqa: E402
from core.llm import embedded as embedded_module  # noqa: E402
from core.llm.embedded import EmbeddedLlamaBackend, resolve_model_path  # noqa: E402
from core.settings import LLMSettings  # noqa: E402

RELOADS = int(os.environ.get("BENCH_RELOADS", "3"))
SWITCHES = int(os.environ.get("BENCH_SWITCHES", "20"))
GENERATIONS = int(os.environ.get("BENCH_GENERATIONS", "3"))
PROMPT = [
    ChatMessage(role="system", content="You are a concise clinical assistant."),
    ChatMessage(role="user", content="List the first-line steps for managing anaphylaxis in adults, one per line."),
]
PARAMS = GenerationParams(max_tokens=64, temperature=0.0, seed=42)


def find_adapter(base: Path, folder: Path) -> tuple[Path, str]:
    shipped = sorted((REPO / "data" / "adapters").glob("*.gguf"))
    if shipped:
        return shipped[0], f"shipped {shipped[0].name}"
    path = random_lora(folder / "bench-random.gguf", read_gguf(base),
                       weights=("attn_q", "attn_k", "attn_v", "attn_output"), rank=8, alpha=8.0, std=0.02)
    return path, "random rank-8 LoRA on attn_q/k/v/output (no adapter shipped in data/adapters/)"


def fresh_load(settings: LLMSettings) -> float:
    """Seconds for a new `EmbeddedLlamaBackend` when the process holds no loaded copy of the model."""
    embedded_module._ENGINES.clear()
    t0 = time.perf_counter()
    backend = EmbeddedLlamaBackend(settings)
    elapsed = time.perf_counter() - t0
    backend._engine.llm.close()
    embedded_module._ENGINES.clear()
    return elapsed


def switch(backend: EmbeddedLlamaBackend, adapter: AdapterChoice | None) -> float:
    """One switch as a request does it: under the model lock, set the adapter (or none) and reset."""
    t0 = time.perf_counter()
    with backend._engine.lock:
        backend._apply_adapter(adapter)
    return time.perf_counter() - t0


def decode_rate(backend: EmbeddedLlamaBackend, adapter: AdapterChoice | None) -> tuple[float, int]:
    with backend.generate(PROMPT, PARAMS, adapter) as generation:
        for _ in generation:
            pass
        stats = generation.stats
    tokens = stats.completion_tokens
    decode_s = stats.total_s - (stats.ttft_s or 0.0)
    return ((tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0), tokens


def main() -> int:
    settings = LLMSettings(backend="embedded")
    base = resolve_model_path(settings)
    reloads = [fresh_load(settings) for _ in range(RELOADS)]
    backend = EmbeddedLlamaBackend(settings)
    with tempfile.TemporaryDirectory() as tmp:
        path, origin = find_adapter(base, Path(tmp))
        adapter_mb = path.stat().st_size / 1e6
        on, off = AdapterChoice(name=path.stem, path=path, scale=1.0), None
        first = switch(backend, on)  # includes llama_adapter_lora_init, once per process
        switch(backend, off)
        ons, offs = [], []
        for _ in range(SWITCHES):
            ons.append(switch(backend, on))
            offs.append(switch(backend, off))
        rates: dict[str, list[float]] = {"off": [], "on": []}
        tokens: dict[str, list[int]] = {"off": [], "on": []}
        for _ in range(GENERATIONS):
            for name, choice in (("off", off), ("on", on)):
                rate, n = decode_rate(backend, choice)
                rates[name].append(rate)
                tokens[name].append(n)
    reload_s = statistics.median(reloads)
    switch_s = statistics.median(ons + offs)
    print(f"model: {base.name} ({base.stat().st_size / 1e6:.0f} MB); adapter: {origin} ({adapter_mb:.1f} MB)")
    print(f"base reload (fresh EmbeddedLlamaBackend): median {reload_s * 1000:.1f} ms over {RELOADS}")
    print(f"adapter first load + switch on: {first * 1000:.1f} ms (once per process)")
    print(f"switch on: median {statistics.median(ons) * 1000:.3f} ms; off: median {statistics.median(offs) * 1000:.3f} ms "
          f"over {SWITCHES} each")
    rate_off, rate_on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"decode tokens/s: adapter off {rate_off:.1f} (tokens {tokens['off']}), on {rate_on:.1f} (tokens {tokens['on']})")
    print(f"RATIO adapter_switch_vs_reload {switch_s / reload_s:.4f}")
    print(f"RATIO adapter_tokens_per_s_on_vs_off {rate_on / rate_off if rate_off else float('nan'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

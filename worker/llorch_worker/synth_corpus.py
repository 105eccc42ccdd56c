"""Built-in training text for the synthetic tokenizer.

Mixed English prose, code, numbers, CJK, accents and emoji, so that byte-level BPE learns
merges across scripts. It is generated deterministically (no randomness, no files), so the
trained tokenizer — and therefore the checkpoint — is byte-identical for a given size.
"""

from __future__ import annotations

_PROSE = """\
The quick brown fox jumps over the lazy dog while the operator watches the dashboard.
A pool is a machine with a backend: cpu, cuda or metal. Each worker serves one model.
Every request starts with a fresh key-value cache; warmup uses its own cache and leaves nothing.
The matrix runs every model on every backend of every pool and colours each cell green or red.
Download the weights once, then copy them to every pool over the local network.
Tokens per second, time to first token, peak memory and latency are measured side by side.
Hello, world! How are you today? I am fine, thank you. What would you like to know?
The assistant answers questions about llamas, mistral winds, phi ratios and qwen poetry.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2048 3.14159 2.71828 1e-5 -17 +23.
def generate(prompt: str, max_tokens: int = 16) -> str:
    return model.generate(tokenizer(prompt), max_new_tokens=max_tokens)
for i in range(10): print(f"step {i}: loss={i * 0.5:.3f}")
{"job_id": "abc", "prompt": "Hi", "max_tokens": 8, "seed": 0, "stream": true}
Über café naïve façade résumé jalapeño smörgåsbord crème brûlée Ångström.
Привет, мир! Γειά σου κόσμε! שלום עולם! مرحبا بالعالم!
你好，世界！今天天气很好。我们一起学习机器学习和自然语言处理。
こんにちは世界。東京は晴れです。ありがとうございます。
안녕하세요 세계! 감사합니다.
Emoji: 😀 😃 🚀 🦙 🔥 ✅ ❌ 🎉 👍🏽 👨‍👩‍👧 🇫🇷 ❤️
"""

_WORDS = (
    "model worker pool cache token batch stream cancel health metrics prompt answer "
    "question system user assistant the of and to in is that for on with as by at from "
    "river mountain cloud light green red blue yellow quiet rapid gentle bright"
).split()


def corpus(repeat: int) -> list[str]:
    """Return the training lines; `repeat` controls how many generated sentences follow."""
    lines = _PROSE.splitlines()
    n = len(_WORDS)
    # A fixed linear-congruential walk over the word list gives varied but reproducible text.
    state = 12345
    for _ in range(repeat):
        words = []
        for _ in range(12):
            state = (state * 1103515245 + 12345) % (2**31)
            words.append(_WORDS[state % n])
        lines.append(" ".join(words).capitalize() + ".")
    return lines

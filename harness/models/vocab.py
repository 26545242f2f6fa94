"""A small SentencePiece-style (`tokenizer.ggml.model = "llama"`) vocabulary for synthetic models.

Both engines load it as an SPM vocabulary (src/llama-vocab.cpp): `<unk>`=0, `<s>`=1, `</s>`=2,
the 256 byte-fallback tokens `<0x00>`..`<0xFF>` (type BYTE; `<0x0A>` is the newline token the SPM
loader looks up), then ordinary pieces: single characters, `▁`-prefixed words and every prefix of
them (the SPM tokenizer only merges adjacent symbols whose concatenation is in the vocabulary, so
prefixes are what lets "▁the" form), each scored so longer pieces win. Any text tokenizes: what
no piece covers falls back to bytes. Filler tokens pad up to the model's vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import TokenType

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPACE = "\u2581"  # SentencePiece's word-boundary marker

_WORDS = """
the of and to in is was for that on with as by at from it an be this are or his which not but have
had her were one all their there been has they when who more we can also its into would time only
new other about some first after two most them these made over such like may years than many then
world where through out up between so what him could during under well used she make while you
each any work both those including state because just model expert experts memory layer layers token
tokens weight weights hello test benchmark speed fast slow mixture compute cache prompt answer
question number example people day way man part very same how year long little great good still
""".split()

_CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ".,;:!?'\"-()[]{}<>/\\|@#$%^&*+=_~`"
)


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    scores: list[float]
    token_types: list[int]

    @property
    def size(self) -> int:
        return len(self.tokens)


def _ordinary_pieces() -> list[str]:
    pieces: list[str] = [SPACE]
    seen = {SPACE}

    def add(piece: str) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)

    for ch in _CHARACTERS:
        add(ch)
        add(SPACE + ch)
    for word in _WORDS:
        marked = SPACE + word
        for end in range(2, len(marked) + 1):
            add(marked[:end])
        for end in range(2, len(word) + 1):  # the same word inside a longer one, without the marker
            add(word[:end])
    return pieces


def build_vocabulary(vocab_size: int) -> Vocabulary:
    """A vocabulary of exactly `vocab_size` tokens (at least the special, byte and ordinary pieces)."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    scores = [0.0, 0.0, 0.0]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(int(TokenType.BYTE))
        scores.append(0.0)
    for piece in _ordinary_pieces():
        tokens.append(piece)
        types.append(int(TokenType.NORMAL))
        scores.append(float(len(piece)) - 100.0)  # SPM merges the highest-scoring pair first
    if vocab_size < len(tokens):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(tokens)} tokens the base vocabulary needs")
    for i in range(vocab_size - len(tokens)):
        tokens.append(f"<filler_{i}>")
        types.append(int(TokenType.NORMAL))
        scores.append(-10000.0)
    return Vocabulary(tokens=tokens, scores=scores, token_types=types)

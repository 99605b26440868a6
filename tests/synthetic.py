"""A small synthetic "play" for end-to-end tests that should not need the real corpus."""

import numpy as np


def synthetic_play(paragraphs: int = 60, seed: int = 0) -> str:
    """Speeches separated by blank lines, as in the corpus: 'SPEAKERk:' then two lines of words
    (60 paragraphs are about 4,400 characters)."""
    words = "the king queen lord good night sweet prince love death time day man my heart".split()
    rng = np.random.default_rng(seed)
    speeches = [f"SPEAKER{i % 3}:\n" + "\n".join(" ".join(rng.choice(words, 6)) for _ in range(2))
                for i in range(paragraphs)]
    return "\n\n".join(speeches) + "\n"

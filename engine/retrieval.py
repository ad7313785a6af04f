"""A small BM25 (Okapi) index for retrieval-augmented few-shot prompting. Pure Python, no dependency.

    index = BM25([text_1, text_2, ...])
    index.top_k("my printer is broken", k=3)   # -> indices of the 3 most similar documents

Scores follow Robertson & Zaragoza's Okapi BM25 with the non-negative idf used by Lucene:
``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` and
``score(d, q) = sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))``.
Ties are broken by document order, so results are deterministic.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore)."""
    return _TOKEN.findall(text.lower())


class BM25:
    def __init__(self, documents: list[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokenize(d)) for d in documents]
        self.lengths = [sum(c.values()) for c in self.docs]
        self.n = len(self.docs)
        self.avgdl = (sum(self.lengths) / self.n) if self.n else 0.0
        df: Counter = Counter()
        for counts in self.docs:
            df.update(counts.keys())
        self.idf = {t: math.log(1.0 + (self.n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        # Inverted index: term -> [(doc, tf)], so a query touches only documents sharing a term.
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for i, counts in enumerate(self.docs):
            for term, tf in counts.items():
                self.postings.setdefault(term, []).append((i, tf))

    def scores(self, query: str) -> list[float]:
        """The BM25 score of every document for ``query`` (repeated query terms count once each time)."""
        out = [0.0] * self.n
        if not self.n:
            return out
        for term in tokenize(query):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for doc, tf in self.postings[term]:
                norm = self.k1 * (1.0 - self.b + self.b * self.lengths[doc] / (self.avgdl or 1.0))
                out[doc] += idf * tf * (self.k1 + 1.0) / (tf + norm)
        return out

    def top_k(self, query: str, k: int, *, exclude: set[int] | None = None) -> list[int]:
        """Indices of the ``k`` best documents, best first; ties keep document order."""
        scores = self.scores(query)
        order = sorted(range(self.n), key=lambda i: (-scores[i], i))
        if exclude:
            order = [i for i in order if i not in exclude]
        return order[:k]

"""The nearest valid name for a misspelt one, as a "did you mean ...?" hint for error messages."""
from __future__ import annotations

import difflib
from typing import Any


def did_you_mean(word: Any, valid, prefix: str = "") -> str:
    """``"; did you mean `<prefix><nearest>`?"`` for the valid word nearest to ``word`` (difflib,
    or one that ``word`` abbreviates: ``prob`` -> ``probability``); ``""`` when none is near."""
    valid, word = [str(v) for v in valid], str(word)
    close = difflib.get_close_matches(word, valid, n=1, cutoff=0.6) or [v for v in valid if word and v.startswith(word)]
    return f"; did you mean `{prefix}{close[0]}`?" if close else ""

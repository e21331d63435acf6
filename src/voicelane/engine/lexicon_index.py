"""An indexed lexicon for gruut: the front end's main cost, removed.

gruut looks every word up in its language's ``lexicon.db`` (SQLite, ~129k rows for English)
with ``WHERE word = ?`` on a table that has no index on ``word``: a full scan, 8-20 ms per
word, ~75 % of the front end's time for a 10-word callout. We never modify the installed
package: each thread's gruut text processor (gruut keeps them thread-local) gets an in-memory
copy of the database with an index on ``word``, built once per (thread, language) in ~0.2 s.
Lookups return exactly the same rows (same query, same ORDER BY), so pronunciations do not change.
If gruut's internals ever differ from what this expects, nothing is patched and gruut simply
stays slow.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_LOCAL = threading.local()
_INDEX_SQL = "CREATE INDEX IF NOT EXISTS voicelane_word_idx ON word_phonemes (word, pron_order)"


def indexed_copy(db_path: Path) -> sqlite3.Connection:
    """An in-memory copy of a gruut lexicon database with an index on ``word``."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        mem = sqlite3.connect(":memory:")
        src.backup(mem)
    finally:
        src.close()
    mem.execute(_INDEX_SQL)
    return mem


def ensure_indexed(language: str) -> bool:
    """Make this thread's gruut use an indexed lexicon for ``language``; True when it does."""
    done: dict[str, bool] = getattr(_LOCAL, "done", None) or {}
    _LOCAL.done = done
    if language in done:
        return done[language]
    done[language] = False
    try:
        import gruut
        from gruut.lang import DelayedSqlitePhonemizer
        from gruut.phonemize import SqlitePhonemizer

        list(gruut.sentences("a", lang=language))  # creates this thread's text processor
        settings = gruut._LOCAL.processors[""].get_settings(language)
        lookup = settings.lookup_phonemes
        if not isinstance(lookup, DelayedSqlitePhonemizer):
            return False
        lookup.phonemizer = SqlitePhonemizer(db_conn=indexed_copy(lookup.db_path), **lookup.phonemizer_args)
        done[language] = True
    except Exception:  # noqa: BLE001 - an optimisation only: gruut still works unpatched
        return False
    return True

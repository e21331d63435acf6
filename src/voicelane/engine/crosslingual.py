"""Cross-lingual fine-tuning: sounds the English base never heard start from their nearest
English sound by articulatory features, not from noise.

Distance is panphon's weighted feature edit distance (MIT; 21 articulatory features per
segment, diphthongs and affricates compared segment by segment). The map from every token of
every shipped inventory to its nearest base sound is computed once by
``tools/build_inventories.py`` and stored beside the inventories, so neither training nor
alignment needs panphon's 3 s table load; tokens outside the stored map are computed here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

# panphon cannot read the rhotic schwa symbol; it is the schwa with r-colouring
_PANPHON_SPELLING = {"ɚ": "ə˞", "ɝ": "ɜ˞"}


@lru_cache(maxsize=1)
def _distance():
    import panphon.distance

    return panphon.distance.Distance()


def feature_distance(a: str, b: str) -> float:
    """Weighted articulatory-feature edit distance between two IPA sounds (stress ignored)."""
    a, b = (_PANPHON_SPELLING.get(x, x).lstrip("ˈˌ") for x in (a, b))
    return float(_distance().weighted_feature_edit_distance(a, b))


def compute_nearest_base(ipa: str) -> str:
    """The unstressed English base sound closest to `ipa` (ties: earlier in BASE_PHONEMES)."""
    from voicelane.engine.frontend import BASE_PHONEMES

    ipa = ipa.lstrip("ˈˌ")
    if ipa in BASE_PHONEMES:
        return ipa
    scored = [(feature_distance(ipa, b), k, b) for k, b in enumerate(BASE_PHONEMES)]
    return min(scored)[2]


@lru_cache(maxsize=1)
def _stored_map() -> dict[str, str]:
    from voicelane.engine.frontend import _INVENTORY_FILE

    return json.loads(_INVENTORY_FILE.read_text("utf-8"))["nearest_base"]


@lru_cache(maxsize=4096)
def nearest_base(ipa: str) -> str:
    ipa = ipa.lstrip("ˈˌ")
    return _stored_map().get(ipa) or compute_nearest_base(ipa)


def source_token(token: str) -> str:
    """The base token whose embedding a new token starts from: the nearest base sound, with the
    token's stress when the base sound is a vowel (the base has stressed vowel variants)."""
    from voicelane.engine.frontend import SYMBOL_TO_ID

    if token in SYMBOL_TO_ID:
        return token
    stress = token[0] if token[0] in "ˈˌ" else ""
    base = nearest_base(token)
    return stress + base if stress + base in SYMBOL_TO_ID else base


EMBEDDING_KEY = "emb.weight"


def extend_state(state: dict[str, Any], symbols: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Base weights -> weights for a voice with inventory `symbols` (which extends the base's).

    Rows of the base's tokens are kept; every new token's row is a copy of its source token's
    row (``source_token``). Nothing else in the network depends on the vocabulary size."""
    import torch

    emb = state[EMBEDDING_KEY]
    from voicelane.engine.frontend import SYMBOL_TO_ID

    n_base = emb.shape[0]
    if len(symbols) < n_base:
        raise ValueError("the inventory is smaller than the base's")
    rows = [emb[SYMBOL_TO_ID[source_token(t)]] for t in symbols[n_base:]]
    out = dict(state)
    out[EMBEDDING_KEY] = torch.cat([emb, torch.stack(rows)]) if rows else emb.clone()
    return out


def init_table(symbols: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    """Which base token every new token starts from (recorded in the run's status)."""
    from voicelane.engine.frontend import SYMBOLS

    return [{"token": t, "from": source_token(t)} for t in symbols[len(SYMBOLS) :]]

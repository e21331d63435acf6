"""Multilingual front end (issue 10 §1/§3): BCP-47 tags, per-language inventories stored with the
voice, normalisation by each language's rules, refusals instead of mumbling, cross-lingual init."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voicelane.engine import crosslingual, frontend
from voicelane.errors import VoicelaneError

SENTENCES = {  # one sentence per language, with a number gruut must verbalise
    "ar": "مَرْحَبًا بِالعالَم 12",
    "ca": "Tinc 25 anys.",
    "cs": "Dnes přišlo 25 lidí.",
    "de": "Es kostet 12 Euro.",
    "en-us": "Gate 12 is open.",
    "es": "Tengo 25 años.",
    "fa": "سلام دنیا 12",
    "fr": "J'ai 25 ans.",
    "it": "Ho 25 anni.",
    "lb": "Moien, ech sinn hei.",
    "nl": "Ik ben 25 jaar oud.",
    "pt": "Eu tenho 25 anos.",
    "ru": "Мне 25 лет.",
    "sv": "Jag är 25 år gammal.",
    "sw": "Nina miaka ishirini na tano.",
}


def test_every_language_gruut_ships_is_supported():
    assert set(frontend.SUPPORTED_LANGUAGES) == set(SENTENCES)
    rows = frontend.languages_table()
    assert [r["code"] for r in rows] == sorted(SENTENCES)
    assert all(r["package_version"] for r in rows)  # every gruut-lang package is installed


@pytest.mark.parametrize(
    "tag,code",
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("pt-BR", "pt"),
        ("en-us", "en-us"),
        ("en", "en-us"),
        ("EN-US", "en-us"),
        ("cs_CZ", "cs"),
        ("de-AT", "de"),
    ],
)
def test_bcp47_tags_map_to_the_engine_language(tag, code):
    assert frontend.check_language(tag) == code


@pytest.mark.parametrize("tag", ["zh", "zh-CN", "xx", "", "ru RU", "ja-JP", "../en"])
def test_unsupported_languages_are_refused(tag):
    with pytest.raises(VoicelaneError) as e:
        frontend.phonemize("hello", tag)
    assert e.value.code == "language_unsupported"
    assert "cs" in e.value.details["supported"]


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_each_language_phonemizes_inside_its_inventory(lang):
    inv = frontend.inventory(lang)
    utt = frontend.phonemize(SENTENCES[lang], lang)
    assert utt.tokens[0] == frontend.START and utt.tokens[-1] == "<.>"
    assert all(t in inv.index for t in utt.tokens)
    assert utt.ids == [inv.index[t] for t in utt.tokens]
    assert list(inv.symbols[: len(frontend.SYMBOLS)]) == frontend.SYMBOLS  # base rows keep their ids


def test_english_inventory_is_the_base_weights_inventory():
    from helpers import REPO

    cfg = json.loads((REPO / "weights" / "voicelane-slt-base-v1" / "voice_config.json").read_text("utf-8"))
    assert frontend.inventory("en-us").symbols == tuple(cfg["symbols"])
    assert cfg["arch"]["num_chars"] == len(frontend.SYMBOLS) == 80


@pytest.mark.parametrize(
    "lang,text,words",
    [
        ("cs", "Přišlo 25 lidí.", ["přišlo", "dvacet", "pět", "lidí"]),
        ("de", "Es kostet 12 Euro.", ["es", "kostet", "zwölf", "euro"]),
        ("ru", "Мне 25 лет.", ["мне", "двадцать", "пять", "лет"]),
        ("it", "Nel 2024.", ["nel", "duemilaventiquattro"]),
        ("es", "Tengo 25 años.", ["tengo", "veinticinco", "años"]),
        ("fr", "J'ai 25 ans.", ["j'ai", "vingt", "cinq", "ans"]),
        ("nl", "Op 3 mei 2024.", ["op", "drie", "mei", "tweeduizendvierentwintig"]),
        ("pt", "Em 2024.", ["em", "dois", "mil", "e", "vinte", "e", "quatro"]),
        ("en-us", "Dr. Smith paid $5.", ["doctor", "smith", "paid", "five", "dollars"]),
    ],
)
def test_numbers_are_read_by_the_languages_rules(lang, text, words):
    assert frontend.normalized_words(text, lang) == words


@pytest.mark.parametrize(
    "lang,text,why",
    [
        ("cs", "Привет", "Latin script"),  # wrong script: gruut would guess 's k iː iː'
        ("it", "ciao мир", "Latin script"),
        ("ru", "hello", "Cyrillic script"),
        ("sw", "miaka 25", "write them as words"),  # no number rules for Swahili: not '25' -> 'i'
        ("de", "Ich habe 5 €.", "symbol"),  # gruut would read '€' as 'ç'
        ("sv", "År 2024.", "digits"),  # num2words has no Swedish years
    ],
)
def test_text_the_voice_cannot_say_is_refused(lang, text, why):
    with pytest.raises(VoicelaneError) as e:
        frontend.phonemize(text, lang)
    assert e.value.code == "text_unvoiceable"
    assert why in e.value.message


def test_a_sound_outside_the_voices_stored_inventory_is_refused():
    inv = frontend.inventory("cs")
    without_r = tuple(t for t in inv.symbols if t != "r̝")
    assert frontend.phonemize("Dobrý den.", "cs", without_r).tokens  # no ř: fine
    with pytest.raises(VoicelaneError) as e:
        frontend.phonemize("Přišlo pět lidí.", "cs", without_r)
    assert e.value.code == "text_unvoiceable" and e.value.details["phoneme"] == "r̝"


def test_stress_moves_from_the_onset_onto_the_vowel():
    assert frontend.normalize_phonemes(["ˈt͡ʃ", "i"]) == ["t͡ʃ", "ˈi"]
    assert frontend.normalize_phonemes(["²ɡ", "'a", "m"]) == ["ɡ", "ˈa", "m"]
    assert frontend.normalize_phonemes(["a", "ː"]) == ["aː"]


def test_alignment_api_gives_words_with_their_inventory_phonemes():
    words = frontend.words_ipa("Dnes přišlo 25 lidí.", "cs-CZ")
    assert [w for w, _ in words] == ["Dnes", "přišlo", "dvacet", "pět", "lidí"]
    assert words[1][1] == ["p", "r̝", "ɪ", "ʃ", "l", "o"]
    inv = frontend.inventory("cs")
    assert all(p in inv.index for _, phones in words for p in phones)


def test_new_sounds_map_to_their_nearest_base_sound_by_features():
    assert crosslingual.compute_nearest_base("ɦ") == "h"
    assert crosslingual.compute_nearest_base("t͡ɕ") == "t͡ʃ"
    assert crosslingual.compute_nearest_base("ɛ̃") == "ɛ"
    assert crosslingual.source_token("ˈa") == "ˈɑ"  # stress kept on vowels
    for tok in ["r̝", "ɲ", "aː", "ɟ", "ou̯"]:  # the stored map is what panphon computes
        assert crosslingual.nearest_base(tok) == crosslingual.compute_nearest_base(tok)


def test_new_phoneme_embeddings_start_from_their_nearest_base_phoneme():
    import torch
    from safetensors.torch import load_file

    from helpers import REPO

    base = load_file(str(REPO / "weights" / "voicelane-slt-base-v1" / "model.safetensors"))
    inv = frontend.inventory("cs")
    state = crosslingual.extend_state(base, inv.symbols)
    emb, old = state[crosslingual.EMBEDDING_KEY], base[crosslingual.EMBEDDING_KEY]
    assert emb.shape == (len(inv.symbols), old.shape[1])
    assert torch.equal(emb[: old.shape[0]], old)  # the base's rows are untouched
    for tok in inv.new_symbols:
        src = crosslingual.source_token(tok)
        assert torch.equal(emb[inv.index[tok]], old[frontend.SYMBOL_TO_ID[src]]), tok
    r = inv.index["r̝"]
    assert torch.equal(emb[r], old[frontend.SYMBOL_TO_ID[crosslingual.compute_nearest_base("r̝")]])
    assert not np.allclose(emb[r].numpy(), 0.0)


def test_the_voice_config_stores_the_inventory_and_the_served_voice_uses_it(tmp_path):
    from voicelane.engine import model, train
    from voicelane.engine.voice import Voice, save_voice

    inv = frontend.inventory("it")
    arch = model.architecture(model.preset("tiny"), len(inv.symbols))
    train.seed_everything(0)
    net, _ = model.build_model(arch)
    mean, std = np.zeros(43, np.float32), np.ones(43, np.float32)
    save_voice(tmp_path, net.state_dict(), arch, mean, std, "it", symbols=inv.symbols)
    cfg = json.loads((tmp_path / "voice_config.json").read_text("utf-8"))
    assert cfg["symbols"] == list(inv.symbols) and cfg["language"] == "it"
    assert cfg["frontend"]["gruut_lang_it"]
    voice = Voice.load(tmp_path)
    assert voice.symbols == inv.symbols
    assert voice.synthesize("Ciao, come stai?").seconds > 0.1
    with pytest.raises(VoicelaneError) as e:
        voice.synthesize("Привет")
    assert e.value.code == "text_unvoiceable"


def test_languages_command_lists_them(capsys):
    from voicelane.cli import main

    assert main(["languages", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["code"] for r in rows} == set(SENTENCES)
    assert all(r["package"].startswith("gruut_lang_") for r in rows)


def test_gates_are_per_language():
    from voicelane import evaluate as ev
    from voicelane.lane import DEFAULT_GATES

    assert ev.gates_for("en-US") == DEFAULT_GATES
    it = ev.gates_for("it")
    assert "wer_max" not in it and it["per_broad_max"] > 0 and it["mcd_db_max"] > 0
    with pytest.raises(VoicelaneError):
        ev.gates_for("tlh")


def test_phone_error_proxy_hears_real_speech_and_not_noise():
    import soundfile as sf

    from helpers import CORPORA
    from voicelane import evaluate as ev

    cid, text = (CORPORA / "slt_heldout" / "metadata.csv").read_text("utf-8").splitlines()[0].split("|")[:2]
    wav, sr = sf.read(CORPORA / "slt_heldout" / "wavs" / f"{cid}.flac", dtype="float32")
    rec, ref = ev.PhoneRecognizer(), ev.reference_phones(text, "en-us")
    score, noise = ev.PhoneScore(), ev.PhoneScore()
    score.add(ref, rec.phones(wav, sr))
    noise.add(ref, rec.phones(np.random.default_rng(0).normal(0, 0.1, len(wav)).astype(np.float32), sr))
    assert score.rates()[1] < 0.4 < 0.8 < noise.rates()[1]
    assert ev.broad(["AA", "T", "S", "CH", "M", "L"]) == ["V", "S", "F", "A", "N", "L"]


def test_evaluation_without_an_asr_reports_the_proxy(tmp_path):
    import soundfile as sf

    from helpers import CORPORA
    from voicelane import evaluate as ev
    from voicelane.engine import model, train
    from voicelane.engine.voice import Voice

    inv = frontend.inventory("it")
    arch = model.architecture(model.preset("tiny"), len(inv.symbols))
    train.seed_everything(0)
    net, _ = model.build_model(arch)
    voice = Voice.from_state(net.state_dict(), arch, np.zeros(43), np.ones(43), "it")
    cid = (CORPORA / "slt_heldout" / "metadata.csv").read_text("utf-8").splitlines()[0].split("|")[0]
    wav, _ = sf.read(CORPORA / "slt_heldout" / "wavs" / f"{cid}.flac", dtype="float32")
    res = ev.evaluate(voice.synthesize, [ev.Clip("c1", "Il treno parte alle otto.", wav)], None, language="it")
    assert res["wer"] is None and res["prompts_wer"] is None and res["asr"] is None
    assert res["per"] is not None and res["per_broad"] is not None and res["per_broad_floor_real_audio"] is not None
    assert res["per_clip"][0]["id"] == "c1" and res["mcd_db"] > 0


def test_a_voice_config_whose_symbols_do_not_extend_the_base_is_refused(tmp_path):
    from voicelane.engine import model, train
    from voicelane.engine.voice import Voice, save_voice

    inv = frontend.inventory("cs")
    arch = model.architecture(model.preset("tiny"), len(inv.symbols))
    train.seed_everything(0)
    net, _ = model.build_model(arch)
    save_voice(tmp_path, net.state_dict(), arch, np.zeros(43), np.ones(43), "cs", symbols=inv.symbols)
    cfg_path = tmp_path / "voice_config.json"
    cfg = json.loads(cfg_path.read_text("utf-8"))
    cfg["symbols"] = cfg["symbols"][1:] + cfg["symbols"][:1]  # same size, English rows moved
    cfg_path.write_text(json.dumps(cfg), "utf-8")
    with pytest.raises(VoicelaneError) as e:
        Voice.load(tmp_path)
    assert e.value.code == "manifest_invalid"


@pytest.mark.slow
def test_the_committed_inventories_are_what_the_installed_packages_give():
    import subprocess
    import sys

    from helpers import REPO

    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_inventories.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr

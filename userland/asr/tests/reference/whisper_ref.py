#!/usr/bin/env python3
"""Reference transcriptions for havn-asr's tests: faster-whisper 1.2.1 on CTranslate2
4.8.5 (CPU, float32, one thread), greedy, no timestamps, one 30 s window.

For each WAV (16 kHz mono 16-bit PCM; samples are int16 / 32768, as havn-asr reads
them) it records:
- `ids`: the greedy token ids from `WhisperModel.model.generate` on the encoder output
  of the padded log-mel window, with exactly the prompt, suppression and length options
  `transcribe` passes;
- `transcribe_ids` / `text`: what `WhisperModel.transcribe(beam_size=1, best_of=1,
  temperature=0, without_timestamps=True, vad_filter=False,
  condition_on_previous_text=False, no_speech_threshold=None)` returns (segments whose
  text is blank are dropped by faster-whisper, so these may be empty);
- `mel` (with --mel): the [80, 3000] encoder input, row-major.

Usage: whisper_ref.py --model DIR --out OUT.json [--mel] WAV...
"""
import argparse
import json
import wave

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.transcribe import get_suppressed_tokens
from faster_whisper.tokenizer import Tokenizer


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == 16000, path
        raw = w.readframes(w.getnframes())
    return (np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mel", action="store_true")
    ap.add_argument("wavs", nargs="+")
    a = ap.parse_args()

    model = WhisperModel(a.model, device="cpu", compute_type="float32", cpu_threads=1)
    assert not model.model.is_multilingual
    tokenizer = Tokenizer(model.hf_tokenizer, False, task=None, language=None)
    suppress = list(get_suppressed_tokens(tokenizer, [-1]))
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)

    out = {
        "prompt": prompt,
        "suppress_tokens": suppress,
        "ctranslate2": __import__("ctranslate2").__version__,
        "faster_whisper": __import__("faster_whisper").__version__,
        "clips": [],
    }
    for path in a.wavs:
        audio = read_wav(path)
        feats = model.feature_extractor(audio)
        content = feats.shape[-1] - 1
        seg = pad_or_trim(feats[:, : min(3000, content)])
        enc = model.encode(seg)
        res = model.model.generate(
            enc,
            [prompt],
            beam_size=1,
            patience=1,
            length_penalty=1,
            repetition_penalty=1,
            no_repeat_ngram_size=0,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
            max_initial_timestamp_index=50,
        )[0]
        segments, _ = model.transcribe(
            audio,
            beam_size=1,
            best_of=1,
            temperature=0,
            without_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            no_speech_threshold=None,
        )
        segments = list(segments)
        clip = {
            "path": path,
            "ids": list(res.sequences_ids[0]),
            "transcribe_ids": [t for s in segments for t in s.tokens],
            "text": "".join(s.text for s in segments),
        }
        if a.mel:
            clip["mel"] = [float(v) for v in seg.astype(np.float32).reshape(-1)]
        out["clips"].append(clip)
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()

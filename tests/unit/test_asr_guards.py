"""The ASR's judgement of an attempt: too many words for the audio."""

from __future__ import annotations

from iam_cluster.pipeline.asr import MAX_WORDS_PER_SECOND, _better, too_dense
from iam_cluster.pipeline.types import TranscribeOptions


def test_too_dense_allows_fast_speech_and_short_clips():
    assert not too_dense(0, 0.0) and not too_dense(2, 0.1)  # two words of slack
    assert not too_dense(8, 1.08)  # "I thought, you know, I heard a beat." as aligned in sample.wav
    assert not too_dense(120, 29.0)  # four words a second over a full window
    assert too_dense(19, 1.3)  # the trn01 hallucination
    assert too_dense(int(MAX_WORDS_PER_SECOND * 30) + 3, 30.0)


def test_an_attempt_the_audio_can_hold_is_preferred():
    o = TranscribeOptions()
    dense = dict(dense=True, compression_ratio=1.2, avg_logprob=-0.1)
    sparse = dict(dense=False, compression_ratio=3.0, avg_logprob=-1.5)
    assert _better(sparse, dense, o) and not _better(dense, sparse, o)
    ok = dict(dense=False, compression_ratio=1.2, avg_logprob=-0.5)
    assert _better(ok, sparse, o) and not _better(sparse, ok, o)


def test_a_phrase_written_again_with_no_audio_under_it_is_dropped():
    from iam_cluster.pipeline.asr import unheard_repeats

    def w(text, start, end):
        return dict(word=text, start=start, end=end, probability=0.9)

    # a window of skipped speech (trn05 in a folder run) wrote its phrase twice; the aligner
    # found audio for the first copy only and put the second at the window's last instant
    said = [w(" basically", 3.9, 4.3), w(" have", 4.3, 4.5), w(" an", 4.5, 4.6), w(" idea", 4.6, 5.0),
            w(" involved", 5.0, 5.7)]
    again = [w(t["word"], 5.72, 5.72) for t in said]
    assert unheard_repeats(said + again) == {id(x) for x in again}
    # said twice, and heard twice: kept ("And he's Ed. And he's Ed.")
    twice = [w(" And", 0.0, 0.2), w(" he's", 0.2, 0.4), w(" Ed.", 0.4, 0.8),
             w(" and", 1.0, 1.2), w(" he's", 1.2, 1.4), w(" Ed", 1.4, 1.8)]
    assert unheard_repeats(twice) == set()
    # unheard words that repeat nothing, or one word only: kept (the aligner squeezes short words)
    assert unheard_repeats([w(" so", 0.0, 0.3), w(" it", 0.3, 0.3), w(" is", 0.3, 0.3)]) == set()
    assert unheard_repeats([w(" no", 0.0, 0.3), w(" no", 0.3, 0.3)]) == set()


def test_a_decoding_loop_keeps_its_first_copy():
    """In a window Whisper's own test calls repetitive, a phrase written three times or more in a
    row is a loop: its first copy stays, the rest (a last copy cut short too) goes, and the speech
    under them is left to the skipped-speech pass. Repeats people say are kept."""
    from iam_cluster.pipeline.asr import looped_copies

    def kept(text: str) -> str:
        words = [dict(word=" " + t, start=0.0, end=0.0, probability=0.9) for t in text.split()]
        gone = looped_copies(words)
        return " ".join(w["word"].strip() for w in words if id(w) not in gone)

    # seen on the perturbed meetings of make_longform.py (1.2x fast; reverberant room)
    assert kept("Thank you. " * 16 + "So this is the second half") == "Thank you. So this is the second half"
    assert kept("there was a reason he needed me, " + "was a reason I " * 11 + "was a") == \
        "there was a reason he needed me, was a reason I"
    assert kept("Hello. Hello. Hello. Hello. Hello. I didn't know") == "Hello. I didn't know"
    for said in ("hello hello how are you", "no, no, that's it", "And he's Ed. And he's Ed.",
                 "the cat sat on the mat"):
        assert kept(said) == said


def test_a_word_stretched_over_speech_whisper_jumped_marks_its_window():
    """Without timestamp tokens the aligner lays the word after a skipped sentence over its audio
    ("he" over 1.58 s where "What joy there is in living" was said): such a window is flagged;
    words said slowly, numbers said digit by digit and ordinary words are not."""
    from iam_cluster.pipeline.asr import spoken_letters, stretched
    from iam_cluster.pipeline.types import WindowText

    def window(*words):
        at, out = 0.0, []
        for word, seconds in words:
            out.append({"word": word, "start": at, "end": at + seconds, "probability": 0.9})
            at += seconds
        return WindowText(segments=[{"start": 0.0, "end": at, "text": "", "words": out}], avg_logprob=-0.3,
                          no_speech_prob=0.0, temperature=0.0)

    assert spoken_letters(" 90210.") == 15 and spoken_letters(" he's") == 3
    assert stretched(window((" And", 0.64), (" he", 1.58), (" did", 0.28)))
    assert stretched(window((" A", 0.5), (" little", 1.65)))
    assert not stretched(window((" typography", 1.77), (" 01803", 2.17), (" the", 1.1), (" so", 0.4)))
    assert not stretched(WindowText(segments=[], avg_logprob=-0.3, no_speech_prob=0.9, temperature=0.0))


def test_a_continuation_loses_its_words_from_a_stretched_one_on():
    """A window decoded on past where its text stopped keeps the words before the first stretched
    one it added (the speech under it goes to the skipped-speech pass); earlier stretched words and
    a continuation without any are left alone."""
    from iam_cluster.pipeline.asr import WindowText, _until_stretched

    def w(text, start, end):
        return dict(word=text, start=start, end=end, probability=0.9)

    first = [w(" He", 24.1, 24.4), w(" might", 24.4, 26.0)]  # stretched, but the first decode's
    added = [w(" even", 26.0, 26.3), w(" have", 26.3, 26.5), w(" been", 26.5, 28.4), w(" made", 28.4, 28.6)]
    text = WindowText(segments=[dict(start=24.1, end=26.0, text=" He might", words=first),
                                dict(start=26.0, end=28.6, text=" even have been made", words=added)],
                      avg_logprob=-0.3, no_speech_prob=0.01, temperature=0.0)
    cut = _until_stretched(text, len(first))
    assert [x["word"] for s in cut.segments for x in s["words"]] == [" He", " might", " even", " have"]
    assert cut.segments[-1]["text"] == " even have" and cut.segments[-1]["end"] == 26.5
    assert _until_stretched(text, 6) is text  # nothing added
    assert _until_stretched(text, 0).segments[0]["words"] == [first[0]]  # counted from the start


def test_a_continuation_keeps_only_what_it_adds_to_the_text_before_it():
    """Decoded again from its last segment's timestamp, Whisper repeats that segment before going
    on: the repeat goes, the rest is added; one that goes back further and stops inside the text
    already written re-read old speech and is refused."""
    from iam_cluster.pipeline.asr import new_words

    first = " We are sure that one war is enough. He might even have been"
    assert new_words(first, " He might even have been made amiable himself.") == " made amiable himself."
    assert new_words(first, " made amiable himself.") == " made amiable himself."
    assert new_words(first, " been. Made amiable") == " Made amiable"
    assert new_words(first, " He might even have been") == ""
    assert new_words(first, " We are sure that one war is enough.") is None  # went back, never caught up
    assert new_words(first, " Tear a thin sheet.") == " Tear a thin sheet."
    assert new_words("", " Tear a thin sheet.") == " Tear a thin sheet."


def test_an_unheard_run_that_writes_an_earlier_phrase_again_is_dropped_with_its_end():
    """A retry in a noisy reading (read_noisy) wrote its sentence's end twice; the second copy's
    first five words were aligned to one instant, its last two to 0.2 s. Unheard runs that write
    nothing earlier, or under three words, stay."""
    from iam_cluster.pipeline.asr import unheard_repeats

    def w(text, start, end):
        return dict(word=text, start=start, end=end, probability=0.9)

    said = [w(" rather", 81.84, 82.10), w(" selfish", 82.10, 82.69), w(" as", 82.69, 83.23), w(" to", 83.23, 83.37),
            w(" be", 83.37, 83.55), w(" all", 83.55, 83.73), w(" disposed.", 83.73, 84.01)]
    again = [w(t, 84.01, 84.01) for t in (" As", " selfish", " as", " to", " be")]
    end = [w(" all", 84.01, 84.13), w(" disposed.", 84.13, 84.21)]
    after = [w(" They", 85.27, 86.07)]
    assert unheard_repeats(said + again + end + after) == {id(x) for x in again + end}
    # an unheard run that writes nothing said before it stays
    other = [w(t, 84.01, 84.01) for t in (" the", " thin", " stripe")]
    assert unheard_repeats(said + other) == set()
    # two unheard words are too few to judge
    assert unheard_repeats(said + again[3:] + end) == set()

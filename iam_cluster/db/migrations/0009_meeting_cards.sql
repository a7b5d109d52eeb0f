-- 0009_meeting_cards: a meeting without its heavy columns (the stored transcript, its text and the
-- search vector), for lists and polling: a one-hour meeting's transcript is a megabyte of JSON.

CREATE VIEW meeting_cards AS
SELECT id, user_id, title, description, meeting_date, duration_seconds, audio_file_url, audio_file_size,
       audio_format, original_filename, processing_status, processing_started_at, processing_completed_at,
       processing_error, model_used, provider_used, language_detected, transcription_confidence,
       transcription_cost, speaker_names, created_at, updated_at
FROM meetings;

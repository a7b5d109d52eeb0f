-- 0007_insights: one row of meeting insights per meeting (summary, action items, sentiment...).

-- Written by the worker in the job's final transaction, or again on demand; a failed computation
-- keeps its error here while the transcript itself completes.
CREATE TABLE meeting_insights (
    meeting_id  uuid PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('completed', 'failed')),
    insights    jsonb,
    error       text,
    -- 'offline' or 'llm:MODEL': where the summary and action items came from.
    backend     text,
    computed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meeting_insights_result_check CHECK ((status = 'completed') = (insights IS NOT NULL))
);

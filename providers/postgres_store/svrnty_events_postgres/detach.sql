-- Detach batches rows into the pending rows they stand for (see schema.sql): in flight to the
-- same consumer until the same deadline, attempt 1, the same token. A change of
-- representation only, safe alone and in any transaction.
-- $1 group id, $2 stream id, $3 consumer (NULL: any), $4 tokens (NULL: any), $5 sequences
-- (NULL: any; else the rows holding one of them).
WITH b AS (
    DELETE FROM {s}.batches b WHERE b.group_id = $1 AND ($3::text IS NULL OR b.consumer = $3)
        AND ($4::bigint[] IS NULL OR b.token = ANY($4::bigint[]))
        AND ($5::bigint[] IS NULL OR b.seqs && $5::bigint[])
    RETURNING b.token, b.consumer, b.due, b.seqs
)
INSERT INTO {s}.pending (group_id, seq, event_id, state, consumer, due, attempts, token)
SELECT $1, e.seq, e.id, 1, b.consumer, b.due, 1, b.token
FROM b CROSS JOIN LATERAL unnest(b.seqs) AS t(seq)
JOIN {s}.events e ON e.stream_id = $2 AND e.seq = t.seq
ON CONFLICT DO NOTHING

-- Accounts derived before due instants existed (migration 0016) are due now: the time tick
-- evaluates each once (inactivity, churn risk, lapsing), then stores when it is next due. A
-- recompute re-derives contacts only; accounts are few beside them, so this update is short.
UPDATE accounts SET due_at = now() WHERE due_at IS NULL AND merged_into IS NULL;

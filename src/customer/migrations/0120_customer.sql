-- Customer banking API (issue 8): a customer's notification preferences. Without a row the
-- customer gets every channel they have a contact for and the server's locale.
CREATE TABLE customer_preferences (
    user_id     TEXT PRIMARY KEY,                                   -- identity_users.id
    channels    INTEGER NOT NULL CHECK (channels BETWEEN 1 AND 3),  -- 1 e-mail, 2 SMS, 3 both
    locale      TEXT NOT NULL CHECK (locale IN ('es', 'en')),
    updated_at  INTEGER NOT NULL                                    -- microseconds since the epoch
) STRICT;

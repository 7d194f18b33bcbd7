-- TOTP resynchronisation (issue 7): the clock drift of a soft token, in time steps, found
-- by a resync with two consecutive codes and added to the server's step on every check.
ALTER TABLE mfa_totp ADD COLUMN drift INTEGER NOT NULL DEFAULT 0;

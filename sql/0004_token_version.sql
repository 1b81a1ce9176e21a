-- 0004: a token version per user. Access tokens carry the version they were
-- signed under ("ver"); the middleware accepts a token only while it matches.
-- Any change of role, status, store or password bumps it, here in the
-- database, so every path that changes a user (admin update, /me, password
-- reset, a manual UPDATE by an operator) retires the user's old tokens.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 1 CHECK (token_version >= 1);

CREATE FUNCTION users_bump_token_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.role IS DISTINCT FROM OLD.role OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.store_id IS DISTINCT FROM OLD.store_id
       OR NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
        NEW.token_version := OLD.token_version + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_token_version BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_bump_token_version();

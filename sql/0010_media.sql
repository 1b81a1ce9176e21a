-- 0010: product media: the images attached to products (and optionally to one
-- of their variants) and the renditions made of each by the media job.
--
-- Objects live in the media storage (local disk or S3) under content-addressed
-- keys "s<store>/<sha256>.<ext>", so two images of the same bytes in one store
-- share their objects; a key is deleted only when no row of its store names it
-- any more (the media.deleted job checks, under an advisory lock per key that
-- the upload takes too).
--
-- An image is 'processing' until its renditions exist, 'ready' after, 'failed'
-- when the job gave up (the job is then a dead letter operators can retry).
CREATE TABLE product_images (
    store_id     bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    product_id   bigint NOT NULL,
    variant_id   bigint,
    alt          text NOT NULL DEFAULT '' CHECK (length(alt) <= 500),
    position     int NOT NULL DEFAULT 0 CHECK (position BETWEEN 0 AND 10000),
    state        text NOT NULL DEFAULT 'processing'
                 CHECK (state IN ('processing', 'ready', 'failed')),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    mime         text NOT NULL CHECK (mime IN ('image/jpeg', 'image/png', 'image/webp', 'image/avif')),
    bytes        bigint NOT NULL CHECK (bytes > 0),
    width        int NOT NULL CHECK (width > 0),
    height       int NOT NULL CHECK (height > 0),
    url          text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    CONSTRAINT product_images_product_fk FOREIGN KEY (store_id, product_id)
        REFERENCES products (store_id, id) ON DELETE CASCADE,
    -- a deleted variant leaves its images on the product
    CONSTRAINT product_images_variant_fk FOREIGN KEY (store_id, variant_id)
        REFERENCES product_variants (store_id, id) ON DELETE SET NULL (variant_id)
);
CREATE INDEX product_images_product_idx ON product_images (store_id, product_id, position, id);
CREATE INDEX product_images_key_idx ON product_images (store_id, key);

CREATE TABLE product_image_renditions (
    store_id   bigint NOT NULL,
    image_id   bigint NOT NULL,
    format     text NOT NULL CHECK (format IN ('webp', 'jpeg')),
    width      int NOT NULL CHECK (width > 0),
    height     int NOT NULL CHECK (height > 0),
    bytes      bigint NOT NULL CHECK (bytes > 0),
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    url        text NOT NULL,
    PRIMARY KEY (store_id, image_id, format, width),
    FOREIGN KEY (store_id, image_id) REFERENCES product_images (store_id, id) ON DELETE CASCADE
);
CREATE INDEX product_image_renditions_key_idx ON product_image_renditions (store_id, key);

-- Whatever deletes an image (its DELETE route, its product's, a cascade) asks
-- for its objects to go, in the same transaction: one media.deleted outbox row
-- with the keys of the original and of its renditions (still there: BEFORE).
-- A store being deleted is skipped (its row is already gone, and the outbox row
-- would go with it); its folder is removed by an operator.
CREATE FUNCTION product_images_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM stores WHERE id = OLD.store_id) THEN
        INSERT INTO outbox (store_id, kind, payload)
        SELECT OLD.store_id, 'media.deleted',
               jsonb_build_object('image_id', OLD.id, 'keys',
                   to_jsonb(array_prepend(OLD.key, coalesce(array_agg(r.key), '{}'))))
          FROM product_image_renditions r
         WHERE r.store_id = OLD.store_id AND r.image_id = OLD.id;
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER product_images_deleted BEFORE DELETE ON product_images
    FOR EACH ROW EXECUTE FUNCTION product_images_deleted();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['product_images', 'product_image_renditions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO shopd_app', t);
        END IF;
    END LOOP;
END
$$;

-- The media job kind. On a fresh database 0014 (which creates jobs, later in
-- order) already lists it; a database that had 0014 before this file arrived
-- gets its CHECK widened here.
DO $$
BEGIN
    IF to_regclass('jobs') IS NOT NULL THEN
        ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
        ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
            CHECK (kind IN ('email', 'webhook', 'media', 'noop')); -- noop: 0016
    END IF;
END
$$;

-- Pixel diffs are cached once, by processing, which computes them (its `pixel_diffs` table,
-- services/processing/migrations/003_pixel_diffs.sql). A repeated comparison of the same images
-- asks processing, which answers from that cache without decoding an image; reports keeps no
-- second copy of the same fact.
DROP TABLE IF EXISTS pixel_diffs;

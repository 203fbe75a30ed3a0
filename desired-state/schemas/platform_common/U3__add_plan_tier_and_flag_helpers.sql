-- platform_common U3: undoes V3 (the view, the function, then the tier column and its
-- constraint), in the reverse order of their creation.

DROP VIEW plan_features;
DROP FUNCTION plan_has_feature(text, text);
ALTER TABLE plans DROP CONSTRAINT plans_tier_key;
ALTER TABLE plans DROP COLUMN tier;

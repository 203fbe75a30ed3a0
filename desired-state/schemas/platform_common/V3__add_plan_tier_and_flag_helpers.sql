-- platform_common V3: plan ordering, a function answering whether a plan gets a flag, and a
-- view of every plan with the flags it gets.

-- Plans are ordered (free < team < business < enterprise) so the min_plan of a flag can be compared.
ALTER TABLE plans ADD COLUMN tier integer NOT NULL DEFAULT 0;

UPDATE plans SET tier = CASE code
    WHEN 'free'       THEN 0
    WHEN 'team'       THEN 10
    WHEN 'business'   THEN 20
    WHEN 'enterprise' THEN 30
END;

ALTER TABLE plans ADD CONSTRAINT plans_tier_key UNIQUE (tier);

-- SQL-standard function body (PostgreSQL 14+): parsed when created, so the tables it uses are
-- bound here and the search_path of later callers does not matter.
CREATE FUNCTION plan_has_feature(plan_code text, flag_key text)
    RETURNS boolean
    LANGUAGE sql
    STABLE
RETURN EXISTS (
    SELECT 1
      FROM feature_flags f
      JOIN plans p ON p.code = plan_code
      LEFT JOIN plans m ON m.code = f.min_plan
     WHERE f.key = flag_key
       AND (m.code IS NULL OR p.tier >= m.tier)
);

COMMENT ON FUNCTION plan_has_feature(text, text) IS 'True when the plan is at or above the flag''s minimum plan.';

CREATE VIEW plan_features AS
SELECT p.code AS plan_code,
       f.key  AS flag_key,
       f.enabled_by_default
  FROM plans p
  JOIN feature_flags f ON plan_has_feature(p.code, f.key);

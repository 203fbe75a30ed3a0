-- tenant_template V5: the view the application lists projects from.
--
-- Only projects that are not archived, with the name and e-mail address of their owner.

CREATE VIEW active_projects AS
SELECT p.id,
       p.name,
       p.description,
       p.visibility,
       p.created_at,
       p.updated_at,
       u.id           AS owner_id,
       u.display_name AS owner_name,
       u.email        AS owner_email
  FROM projects p
  JOIN users u ON u.id = p.owner_id
 WHERE NOT p.archived;

COMMENT ON VIEW active_projects IS 'Projects that are not archived, with their owner.';

"""On PostgreSQL, the database itself refuses to change an audit entry, whoever asks: a trigger
raises on every UPDATE of audit_auditentry but the one a deleted account makes (its links set to
NULL); removing entries past their retention stays possible. Other databases rely on AuditEntry.save's refusal."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_entry_is_append_only() RETURNS trigger AS $$
BEGIN
    -- An account deleted: its entries stay, naming it (actor_name) but no longer linking it.
    IF (NEW.at, NEW.action, NEW.actor_name, NEW.target_kind, NEW.target_id, NEW.detail,
        NEW.address, NEW.user_agent, NEW.via)
       IS NOT DISTINCT FROM
       (OLD.at, OLD.action, OLD.actor_name, OLD.target_kind, OLD.target_id, OLD.detail,
        OLD.address, OLD.user_agent, OLD.via)
       AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
       AND (NEW.target_owner_id IS NULL OR NEW.target_owner_id = OLD.target_owner_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an audit entry is never changed';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_entry_append_only BEFORE UPDATE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_is_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_entry_is_append_only();
"""


def _run(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_audit_log")]
    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]

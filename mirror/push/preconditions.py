"""Whether the fields a write is about to set still hold the values the portal edited.

A CRM stamps its versions in whole seconds (Salesforce ``SystemModstamp``, Dataverse
``modifiedon``) or milliseconds (HubSpot), so a change made in the same second as the version a
portal edit was made against, after a sync had read that version, leaves the version as it
was: a version check lets the edit overwrite it. The adapters therefore read the fields a
write sets in the same request that reads the version, and compare them with the edit's base
(``Write.expected_values``): another value is a change the portal never saw, and the write is
refused as if the version had moved. Only the written fields count, so a change of another
field in that second never holds an edit back (the engine merges per field).

Values are compared as the engine stores them: each side converted to its field's type (so
``10`` and ``"10.0"``, or a datetime with and without milliseconds, are one value), an empty
string taken for no value, and floats with the same tolerance as the three-way merge.
"""

from __future__ import annotations

from mirror.adapter import changed_fields, normalized

__all__ = ["changed_fields", "normalized"]

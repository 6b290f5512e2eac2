"""Copier migrations: edits that carry already-generated files across a change the 3-way merge cannot express.

Versioning scheme. Templates are versioned by the commit of this repository they come from: every answers file
records it as ``_commit`` (``git describe``: the tag where one exists, else the abbreviated commit hash), and
``update`` reports it before and after. Tags are not relied on: a clone of main may have none. So a
migration carries no version either: ``copier update`` runs every one listed under ``_migrations`` in ``copier.yml``
after the merge, and each finds the old constructs it owns and rewrites them, or changes nothing when there are none
(a model onboarded after the change, or migrated already). A migration is kept as long as models generated before
its change may still be updated.

Each migration is a module here, run as ``python -m automodel_onboard.migrations.<module> --module-name NAME`` in the
destination checkout. Migrations edit source with libcst, touch only the constructs they own (so user edits
elsewhere in a file survive), skip files they cannot parse (an unresolved merge conflict, say) with a message, and
are idempotent: a second run changes nothing.
"""

"""Copier migrations: edits that carry already-generated files across a change the 3-way merge cannot express.

Versioning scheme. The template repository is versioned by git tags that are PEP 440 versions (``v0.1.0``,
``v0.2.0``, ...); every answers file records the tag it was rendered from as ``_commit``. A migration is listed under
``_migrations`` in ``copier.yml`` with the ``version`` of the first tag whose templates need it: Copier runs it on an
update from any version below that tag to that tag or later (``from < version <= to``), and never again after.
A release that needs a migration therefore gets a new tag; a migration module never changes once its tag exists.

Each migration is a module here, run as ``python -m automodel_onboard.migrations.<module> --module-name NAME`` in the
destination checkout. Migrations edit source with libcst, touch only the constructs they own (so user edits
elsewhere in a file survive), skip files they cannot parse (an unresolved merge conflict, say) with a message, and
are idempotent: a second run changes nothing.
"""

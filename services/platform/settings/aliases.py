"""The developer guide's variable names, and the variables nothing reads.

**Guide names.** A field that reads a name of the guide's besides its own declares it as a
pydantic `AliasChoices(project name, guide name)` (sections.py); `apply_guide_names` reads the
guide's name when the project's is unset or blank, and when both are set the project's name
wins and start-up warns that the guide's is ignored. Every variable in the guide's
"Environment Variables", "Environment Configuration" and "Quick Reference":

| guide's name | read as | note |
| --- | --- | --- |
| `ADVOWARE_API_SECRET` | `ADVOWARE_API_KEY` | Advoware's base64 key, the HMAC-SHA512 secret of the token request |
| `REDIS_DB_ADVOWARE_CACHE` | itself | default 1 as in the guide, when REDIS_URL is unset and REDIS_HOST/REDIS_PORT are used |
| `ESPOCRM_API_BASE_URL`, `ESPOCRM_API_KEY`, `ESPOCRM_API_TIMEOUT_SECONDS`, `ESPOCRM_METADATA_TTL_SECONDS`, `ADVOWARE_API_BASE_URL`, `ADVOWARE_API_KEY`, `XAI_API_KEY`, `XAI_MANAGEMENT_KEY`, `REDIS_HOST`, `REDIS_PORT`, `LOCK_TTL_SECONDS` | themselves | the same names and defaults |

The guide's `XAI_MAX_FILE_SIZE_MB`, `XAI_RATE_LIMIT_RETRY_AFTER`, `ESPOCRM_DEFAULT_PAGE_SIZE`,
`ESPOCRM_MAX_PAGE_SIZE` are constants in its code, not variables: set as variables they are
unknown (below).

**Unknown variables.** Every set `ADVOWARE_*`, `ESPOCRM_*`, `XAI_*` variable that no section
reads (a typo, a guide constant, a name of an older version) is named in ONE start-up warning,
names only, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import AliasChoices

from services.platform.settings.sections import Section

WATCHED_PREFIXES = ("ADVOWARE_", "ESPOCRM_", "XAI_")


def section_classes(root: type[Section] = Section) -> list[type[Section]]:
    """Every settings section (the subclasses of `Section`, however deep)."""
    found: list[type[Section]] = []
    for sub in root.__subclasses__():
        found += [sub, *section_classes(sub)]
    return found


def guide_names(sections: Iterable[type[Section]] | None = None) -> dict[str, str]:
    """guide's name → the project's name, from the fields' `AliasChoices`."""
    table: dict[str, str] = {}
    for section in section_classes() if sections is None else sections:
        for f in section.model_fields.values():
            if isinstance(f.validation_alias, AliasChoices):
                own, *others = [c for c in f.validation_alias.choices if isinstance(c, str)]
                table.update(dict.fromkeys(others, own))
    return table


def known_names(sections: Iterable[type[Section]] | None = None) -> set[str]:
    """Every variable a section reads, its own names and the guide's."""
    classes = section_classes() if sections is None else list(sections)
    return {n for s in classes for n in s.env_names()} | set(guide_names(classes))


def _set(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def apply_guide_names(env: Mapping[str, str]) -> tuple[Mapping[str, str], list[str]]:
    """`env` with each guide name's value under the project's name where that is unset, and
    the warnings for guide names that lost to the project's. `env` itself when nothing applies."""
    overlay: dict[str, str] = {}
    notes: list[str] = []
    for guide, own in guide_names().items():
        if not _set(env, guide):
            continue
        if _set(env, own):
            notes.append(f"{guide} is ignored: {own} is set and wins (the developer guide's name is read only when the project's is unset)")
        else:
            overlay[own] = _set(env, guide)
    return ({**env, **overlay} if overlay else env), notes


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """The set `ADVOWARE_*`, `ESPOCRM_*`, `XAI_*` variables no section reads, sorted."""
    known = known_names()
    return sorted(n for n in env if n.startswith(WATCHED_PREFIXES) and n not in known and _set(env, n))


def unknown_warning(env: Mapping[str, str]) -> list[str]:
    """At most one warning naming the unknown variables (never their values)."""
    names = unknown_variables(env)
    if not names:
        return []
    return [f"unknown variables, not read (a typo? see .env.example): {', '.join(names)}"]

"""Memory profiles, re-exported from ``schemas.profiles`` (pydantic only, so producers load the
same registry). Kept so worker modules import profiles from one place."""

from schemas.profiles import (
    DEFAULT_INSTRUCTIONS,
    Profile,
    ProfileError,
    get_profile,
    import_profile,
    load_profiles,
    namespace_key,
    profile_names,
    register,
)

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "Profile",
    "ProfileError",
    "get_profile",
    "import_profile",
    "load_profiles",
    "namespace_key",
    "profile_names",
    "register",
]

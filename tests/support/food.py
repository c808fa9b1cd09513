"""The seed article's schema and profiles, importable by path (``tests.support.food:food_profile``)
exactly as an application would register its own through ``REVERIE_PROFILES``."""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, Field

from schemas.profiles import Profile


class UserFoodPreference(BaseModel):
    """A food the user likes or dislikes."""

    food_name: str = Field(min_length=1, max_length=100, description="Name of the food.")
    cuisine: str | None = Field(default=None, max_length=100, description="Cuisine, e.g. Japanese, Italian.")
    preference: int = Field(ge=0, le=100, description="0 = hates it, 100 = loves it.")
    description: str | None = Field(default=None, max_length=500, description="Details about the preference.")


class UserLocation(BaseModel):
    """Where the user lives or stays."""

    city: str = Field(min_length=1, max_length=100)
    since: str | None = Field(default=None, max_length=50)


FOOD_INSTRUCTIONS = (
    "Extract the user's food preferences. When a preference changes, update the existing memory. "
    "A preference of 0 means the user no longer likes the food at all: delete that memory."
)

food_profile = Profile(
    name="food",
    schemas=(UserFoodPreference,),
    instructions=FOOD_INSTRUCTIONS,
    enable_deletes=True,
    namespace=("chat", "{user_id}"),
)
food_no_deletes = replace(food_profile, name="food-nodelete", enable_deletes=False)
food_tombstone = replace(food_profile, name="food-tombstone", delete_mode="tombstone")
life_profile = Profile(
    name="life",
    schemas=(UserFoodPreference, UserLocation),
    instructions="Extract food preferences and where the user lives.",
    episodic=True,
    namespace=("life", "{user_id}"),
)
ALL = ",".join(
    f"tests.support.food:{name}" for name in ("food_profile", "food_no_deletes", "food_tombstone", "life_profile")
)
